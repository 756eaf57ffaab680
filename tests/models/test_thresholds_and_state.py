"""Threshold calibration keeps to the false-alarm budget; operating state gates scoring."""

from __future__ import annotations

import numpy as np
import pytest

from edge_agent.core.errors import ModelError
from models.features import Window, WindowSet
from models.model import MachineModel
from models.operating_state import SIMULATOR_CODES, StateRule, learn_levels
from models.thresholds import calibrate, rolling_kth
from simulators.dataset import Dataset


def test_rolling_kth() -> None:
    assert list(rolling_kth(np.array([1.0, 5, 2, 4, 3]), 2, 3)) == [2, 4, 3]


def test_budget_holds_on_fresh_normal_scores() -> None:
    """Calibrated on 3000 scores, fewer than budget x days k-of-n exceedances on 300 000 new ones."""
    rng = np.random.default_rng(0)
    t = calibrate(rng.gamma(2.0, size=3000), windows_per_day=2880, false_alarms_per_day=1.0, k=3, n=5)
    fresh = rng.gamma(2.0, size=300_000)
    days = len(fresh) / 2880
    stat = rolling_kth(fresh, 3, 5)
    crossings = np.sum((stat[1:] >= t.value) & (stat[:-1] < t.value))
    assert crossings <= 1.0 * days
    assert t.level(t.typical) == 0
    assert t.level(t.value) == pytest.approx(1)


def test_a_tighter_budget_gives_a_higher_threshold() -> None:
    scores = np.random.default_rng(1).normal(size=2000) ** 2
    assert calibrate(scores, 2880, 0.1).value > calibrate(scores, 2880, 10).value


def test_calibration_refuses_bad_input() -> None:
    with pytest.raises(ModelError, match="at least 10"):
        calibrate(np.ones(3), 2880, 1)
    with pytest.raises(ModelError, match="NaN"):
        calibrate(np.r_[np.ones(20), np.nan], 2880, 1)


def test_state_from_codes_and_levels() -> None:
    codes = StateRule("state_code", SIMULATOR_CODES)
    assert [codes.classify(v) for v in (0, 1, 2, 3, 2.0, "running", 9, None)] == [
        "off", "idle", "running", "setup", "running", "running", "unknown", "unknown"]  # fmt: skip
    level = StateRule("motor_current", off_below=1.0, running_above=10.0)
    assert [level.classify(v) for v in (0.2, 5.0, 25.0, float("nan"), True)] == [
        "off", "idle", "running", "unknown", "unknown"]  # fmt: skip
    with pytest.raises(ModelError, match="swap"):
        StateRule("x", off_below=5, running_above=1)
    with pytest.raises(ModelError, match="codes"):
        StateRule("x")


def test_learned_levels_separate_running_from_idle(healthy_pump: Dataset) -> None:
    current = healthy_pump.values[:, healthy_pump.signals.index("motor_current")]
    rule = learn_levels("motor_current", current)
    running = healthy_pump.state == 2
    guessed = np.array([rule.classify(v) == "running" for v in current])
    assert (guessed == running).mean() > 0.95
    with pytest.raises(ModelError, match="does not vary"):
        learn_levels("flat", np.ones(100))


def test_unlearned_states_are_never_scored(pump_model: MachineModel, pump_windows: WindowSet) -> None:
    """Off, idle, setup (not learned) and mixed windows get no score, so they can never alert."""
    assert set(pump_model.states) == {"running"}
    features = pump_windows.features[0]
    for state in ("off", "idle", "setup", "mixed", "unknown"):
        assert pump_model.assess(Window(0, 60, features, 60, state)) is None
    stopped = np.zeros_like(features)  # a stopped pump: everything at zero
    assert pump_model.assess(Window(0, 60, stopped, 60, "off")) is None
