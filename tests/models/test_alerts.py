"""The alert lifecycle: k of n, hysteresis, cooldown, severity, acknowledge, restart."""

from __future__ import annotations

import json

import pytest

from edge_agent.core.errors import ModelError
from models.alerts import AlertPolicy, AlertState

POLICY = AlertPolicy(k=3, n=5, clear_after=3, clear_level=0.7, cooldown_s=600, span_s=180)


def feed(state: AlertState, levels: list[float], t0: float = 0.0) -> list[str]:
    kinds: list[str] = []
    for i, level in enumerate(levels):
        kinds += [t.kind for t in state.observe(t0 + 30 * i, t0 + 30 * i + 60, level)]
    return kinds


def test_raise_needs_k_of_n() -> None:
    s = AlertState("m", POLICY)
    assert feed(s, [1.2, 0.1, 1.1, 0.1, 0.2, 0.1, 1.5]) == []  # never 3 in 5
    assert feed(s, [1.2, 0.1, 1.1], t0=1000) == []  # the 1.5 before the gap does not count
    assert feed(s, [1.3], t0=1090) == ["raised"]
    assert s.active
    assert s.since_s == 1000


def test_clear_needs_consecutive_windows_below_the_lower_level() -> None:
    s = AlertState("m", POLICY)
    feed(s, [1.5, 1.5, 1.5])
    assert feed(s, [0.8, 0.8, 0.8, 0.8]) == []  # under the threshold but above clear_level: hysteresis
    assert feed(s, [0.5, 0.5, 0.9, 0.5, 0.5]) == []  # interrupted
    assert feed(s, [0.5]) == ["cleared"]
    assert not s.active


def test_cooldown_suppresses_a_new_alert() -> None:
    s = AlertState("m", POLICY)
    feed(s, [1.5] * 3 + [0.1] * 3)  # raised then cleared at t = 210 s
    assert feed(s, [1.5] * 3, t0=200) == []  # within 600 s
    assert s.suppressed > 0
    assert feed(s, [1.5] * 3, t0=2000) == ["raised"]


def test_severity_escalates_once_per_step() -> None:
    s = AlertState("m", AlertPolicy(alarm_level=2, critical_level=4))
    assert feed(s, [1.1, 1.1, 1.1, 2.5, 2.6, 5.0, 1.5]) == ["raised", "escalated", "escalated"]
    assert s.severity == "critical"
    assert s.peak_level == 5.0


def test_acknowledge_and_restart_from_json() -> None:
    s = AlertState("m", POLICY)
    assert s.acknowledge("ana", 0) is None  # nothing to acknowledge
    feed(s, [1.5] * 3)
    t = s.acknowledge("ana", 100)
    assert t is not None
    assert t.kind == "acknowledged"
    assert t.acknowledged_by == "ana"
    assert s.acknowledge("ben", 101) is None
    restored = AlertState.from_dict(json.loads(json.dumps(s.to_dict())))
    assert restored.active
    assert restored.acknowledged
    assert restored.alert_id == s.alert_id
    assert feed(restored, [0.1] * 3, t0=500) == ["cleared"]
    again = AlertState.from_dict(json.loads(json.dumps(restored.to_dict())))
    assert again.cooldown_until_s == restored.cooldown_until_s


def test_bad_policy_and_damaged_state_are_refused() -> None:
    with pytest.raises(ModelError, match="k <= n"):
        AlertPolicy(k=4, n=3)
    with pytest.raises(ModelError, match="damaged"):
        AlertState.from_dict({"machine": "m"})
