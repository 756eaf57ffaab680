"""Explanations: ranked percentages, sigmas, patterns and the cause hint from the rule table."""

from __future__ import annotations

import numpy as np

from models.explain import explain, hint, pattern
from models.features import Window
from models.model import MachineModel
from simulators.dataset import Dataset
from tests.helpers.datasets import fault_windows


def test_patterns() -> None:
    zero = dict.fromkeys(("mean", "std", "rms", "p2p", "kurtosis", "crest", "slope"), 0.0)
    assert pattern(zero) == "normal"
    assert pattern(zero | {"mean": 5, "rms": 5}) == "up"
    assert pattern(zero | {"mean": -5}) == "down"
    assert pattern(zero | {"std": -6, "p2p": -6}) == "frozen"
    assert pattern(zero | {"kurtosis": 8}) == "noisy"
    assert pattern(zero | {"slope": 4}) == "drifting"
    with_levels = zero | {"level": 0.0, "trend": 0.0}
    assert pattern(with_levels | {"level": 4}) == "up"  # hotter than the load explains, inside its range
    assert pattern(with_levels | {"level": -4}) == "down"
    assert pattern(with_levels | {"trend": 5}) == "drifting"
    # A temperature ramping inside its windows also widens std and peak-to-peak: still a creep, not noise.
    assert pattern(with_levels | {"trend": 5, "std": 4, "p2p": 4}) == "drifting"
    ramp = with_levels | {"slope": 7, "std": 13, "p2p": 11, "kurtosis": -1}  # a cooler failing: steep, flat spread
    assert pattern(ramp) == "drifting"
    assert pattern(ramp | {"kurtosis": 6}) == "noisy"  # spikes: a noisy sensor
    assert pattern(ramp | {"kurtosis": 0}) == "noisy"  # gaussian scatter


def test_rules() -> None:
    assert hint({"vibration_rms": "up", "motor_temperature": "up", "flow": "normal"})["rule"] == "bearing"
    assert hint({"flow": "frozen", "outlet_pressure": "normal"})["rule"] == "frozen-sensor"
    assert hint({"outlet_pressure": "down", "flow": "up"})["rule"] == "leak"
    # A temperature rising alone: cooling first (a failing cooler and a creeping sensor look alike), sensor second.
    alone = hint({"oil_temperature": "up", "motor_current": "normal"})
    assert alone["rule"] == "temperature"
    assert "cooling" in alone["cause"]
    assert "sensor" in alone["cause"]
    assert hint({"oil_temperature": "drifting", "motor_current": "normal"})["rule"] == "temperature"
    assert hint({"oil_temperature": "down", "motor_current": "normal"})["rule"] == "drifting-sensor"
    assert hint({"flow": "up", "motor_current": "normal"})["rule"] == "drifting-sensor"
    assert hint({"oil_temperature": "up", "motor_current": "up"})["rule"] == "overheating"
    # Vibration up alone is how imbalance shows (the simulator's imbalance fault too), not sensor drift.
    assert hint({"vibration": "up", "speed": "normal"})["rule"] == "vibration"
    assert "imbalance" in hint({"vibration_rms": "up", "flow": "normal"})["cause"]
    assert hint({"a": "normal"})["rule"] is None


def test_explanation_of_bearing_wear(pump_model: MachineModel, faulty_pump: Dataset) -> None:
    ws, labels = fault_windows(faulty_pump)
    worst = None
    for i in np.flatnonzero(labels):
        a = pump_model.assess(Window(ws.start_s[i], ws.end_s[i], ws.features[i], 60, ws.state[i]))
        if a is not None and (worst is None or a.level > worst.level):
            worst = a
    assert worst is not None
    assert worst.above
    e = explain(worst, worst.start_s, pump_model.version or "v")
    assert sum(s["percent"] for s in e["signals"]) == __import__("pytest").approx(100, abs=0.5)
    assert e["signals"][0]["signal"] == "vibration_rms"
    assert e["signals"][0]["sigmas"] > 3
    assert [s["percent"] for s in e["signals"]] == sorted((s["percent"] for s in e["signals"]), reverse=True)
    assert "vibration_rms" in e["summary"]
    assert e["since"].endswith("Z")
    assert e["hint"]["confidence"]
