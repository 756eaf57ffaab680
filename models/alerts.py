"""The alert lifecycle of one machine: raise after k of n windows, clear with hysteresis, cooldown.

One window over the threshold is noise; an engineer who is called for noise stops answering.
So an alert is *raised* when at least ``k`` of the last ``n`` scored windows exceed the
threshold (level >= 1), *escalated* when its severity grows, *cleared* only after
``clear_after`` consecutive windows below ``clear_level`` (lower than the raise level:
hysteresis, so a score hovering at the threshold does not flap), and after a clear no new
alert is raised for ``cooldown_s``. Acknowledging marks that somebody is on it; the alert stays
until the data says the machine is normal again.

Windows that are not scored (machine off, idle, in a state never learned) neither raise nor
clear: a fault does not heal because the machine was stopped.

The state is plain JSON (``to_dict``/``from_dict``) so it survives an agent restart, and times
are the windows' own (sample time), so replaying a recording gives the same alerts as live.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any, Literal

from edge_agent.core.errors import ModelError

EventKind = Literal["raised", "escalated", "acknowledged", "cleared"]
SEVERITIES = ("warning", "alarm", "critical")


@dataclass(frozen=True, slots=True)
class AlertPolicy:
    """Debounce, hysteresis, cooldown and the levels that set severity (level 1 = threshold)."""

    k: int = 3
    n: int = 5
    clear_after: int = 5
    clear_level: float = 0.7
    cooldown_s: float = 1800.0
    alarm_level: float = 2.0
    critical_level: float = 4.0
    span_s: float | None = None
    """Time n consecutive windows cover ((n - 1) x hop + window); older windows never count, so
    windows on both sides of a stop or a connection gap are not added up. None: count only."""

    def __post_init__(self) -> None:
        if not 1 <= self.k <= self.n:
            raise ModelError(f"alert debounce needs 1 <= k <= n (got k={self.k}, n={self.n})")
        if self.clear_after < 1 or not 0 <= self.clear_level <= 1:
            raise ModelError("clear_after must be >= 1 and clear_level within [0, 1]")

    def severity(self, level: float) -> str:
        """warning at the threshold, alarm at ``alarm_level``, critical at ``critical_level``."""
        if level >= self.critical_level:
            return "critical"
        return "alarm" if level >= self.alarm_level else "warning"


@dataclass(frozen=True, slots=True)
class Transition:
    """Something an engineer should hear about: the alert as it is after the change."""

    kind: EventKind
    alert_id: str
    severity: str
    since_s: float
    at_s: float
    level: float
    peak_level: float
    acknowledged: bool
    acknowledged_by: str | None


@dataclass(slots=True)
class AlertState:
    """One machine's alert state; feed it every scored window with ``observe``."""

    machine: str
    policy: AlertPolicy = field(default_factory=AlertPolicy)
    active: bool = False
    alert_id: str | None = None
    since_s: float = 0.0
    severity: str = "warning"
    peak_level: float = 0.0
    acknowledged: bool = False
    acknowledged_by: str | None = None
    below: int = 0
    cooldown_until_s: float = float("-inf")
    recent: list[tuple[float, bool]] = field(default_factory=list)  # (window start, above)
    sequence: int = 0
    suppressed: int = 0

    def observe(self, start_s: float, end_s: float, level: float) -> list[Transition]:
        """Take one scored window (its start, end and level); return what changed."""
        above = level >= 1.0
        self.recent.append((start_s, above))
        del self.recent[: -self.policy.n]
        if self.policy.span_s is not None:
            oldest = end_s - self.policy.span_s - 1e-6
            self.recent = [(s, a) for s, a in self.recent if s >= oldest]
        if not self.active:
            hits = [s for s, a in self.recent if a]
            if len(hits) < self.policy.k:
                return []
            if end_s < self.cooldown_until_s:
                self.suppressed += 1
                return []
            self.sequence += 1
            self.active = True
            self.alert_id = f"{self.machine}-{self.sequence}-{int(hits[0])}"
            self.since_s = hits[0]
            self.peak_level = level
            self.severity = self.policy.severity(level)
            self.acknowledged = False
            self.acknowledged_by = None
            self.below = 0
            return [self._transition("raised", end_s, level)]
        self.peak_level = max(self.peak_level, level)
        self.below = self.below + 1 if level < self.policy.clear_level else 0
        if self.below >= self.policy.clear_after:
            event = self._transition("cleared", end_s, level)
            self.active = False
            self.cooldown_until_s = end_s + self.policy.cooldown_s
            self.recent.clear()
            self.below = 0
            return [event]
        severity = self.policy.severity(level)
        if SEVERITIES.index(severity) > SEVERITIES.index(self.severity):
            self.severity = severity
            return [self._transition("escalated", end_s, level)]
        return []

    def acknowledge(self, by: str, at_s: float) -> Transition | None:
        """Someone took the alert on; None when nothing is active (or it already was acknowledged)."""
        if not self.active or self.acknowledged:
            return None
        self.acknowledged = True
        self.acknowledged_by = by
        return self._transition("acknowledged", at_s, self.peak_level)

    def _transition(self, kind: EventKind, at_s: float, level: float) -> Transition:
        assert self.alert_id is not None
        return Transition(
            kind,
            self.alert_id,
            self.severity,
            self.since_s,
            at_s,
            level,
            self.peak_level,
            self.acknowledged,
            self.acknowledged_by,
        )

    def to_dict(self) -> dict[str, Any]:
        """JSON-able state (infinite cooldown written as null)."""
        data = asdict(self)
        data["policy"] = asdict(self.policy)
        data["cooldown_until_s"] = None if self.cooldown_until_s == float("-inf") else self.cooldown_until_s
        data["recent"] = [[s, a] for s, a in self.recent]
        return data

    @classmethod
    def from_dict(cls, data: dict[str, Any], policy: AlertPolicy | None = None) -> AlertState:
        """Restore saved state; ``policy`` (today's config) wins over the saved one."""
        try:
            saved = dict(data)
            saved_policy = AlertPolicy(**saved.pop("policy"))
            cooldown = saved.pop("cooldown_until_s")
            recent = [(float(s), bool(a)) for s, a in saved.pop("recent")]
            state = cls(**saved, policy=policy or saved_policy)
        except (KeyError, TypeError, ValueError) as exc:
            raise ModelError(f"saved alert state is damaged ({exc!r}); it will be rebuilt from new data") from exc
        state.cooldown_until_s = float("-inf") if cooldown is None else float(cooldown)
        state.recent = recent[-state.policy.n :]
        return state
