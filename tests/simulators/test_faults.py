"""Faults act on the right signals only, follow their progression, and leave a ground truth."""

from __future__ import annotations

import math

import pytest

from simulators import MachineState, Plant, SimulatorError
from simulators.faults import FAULT_KINDS, Progression
from simulators.faults.book import Fault

PHYSICAL = [(name, kind) for name, spec in FAULT_KINDS.items() if not spec.sensor for kind in sorted(spec.kinds)]


def twins(kind: str) -> tuple[Plant, Plant]:
    plants = Plant(seed=11, machines=[f"{kind}-1"]), Plant(seed=11, machines=[f"{kind}-1"])
    for plant in plants:
        model = plant.machine(f"{kind}-1")
        model.forced_state = MachineState.RUNNING
        model.forced_load = 0.7
    return plants


@pytest.mark.parametrize(("fault", "kind"), PHYSICAL)
def test_physical_fault_changes_exactly_its_signals(fault: str, kind: str) -> None:
    healthy, faulty = twins(kind)
    faulty.faults.add(f"{kind}-1", fault, severity=1.0, start_s=0.0, progression="sudden")
    changed: set[str] = set()
    for _ in range(900):
        a, b = healthy.step(1.0)[f"{kind}-1"].values, faulty.step(1.0)[f"{kind}-1"].values
        changed |= {name for name in a if a[name] != b[name]}
    assert changed == set(FAULT_KINDS[fault].affected_signals(kind))


@pytest.mark.parametrize("fault", ["sensor_drift", "stuck_sensor", "noisy_sensor"])
def test_sensor_fault_changes_only_its_signal(fault: str) -> None:
    healthy, faulty = twins("pump")
    faulty.faults.add("pump-1", fault, severity=1.0, start_s=100.0, signal="motor_temperature", ramp_s=600)
    diffs = []
    for _ in range(1000):
        a, b = healthy.step(1.0)["pump-1"].values, faulty.step(1.0)["pump-1"].values
        assert {n for n in a if a[n] != b[n]} <= {"motor_temperature"}
        diffs.append(b["motor_temperature"] - a["motor_temperature"])
    assert all(d == 0 for d in diffs[:99])
    assert any(d != 0 for d in diffs[100:])
    if fault == "sensor_drift":
        assert diffs[399] == pytest.approx(diffs[699] / 2, rel=0.05)  # linear ramp over 600 s
    if fault == "noisy_sensor":
        assert max(abs(d) for d in diffs) > 0.25 * 40  # at least one spike of a quarter of the value or more


def test_stuck_sensor_freezes_its_value() -> None:
    plant = Plant(seed=1, machines=["press-1"])
    plant.faults.add("press-1", "stuck_sensor", start_s=10.0, signal="hydraulic_pressure")
    values = [plant.step(0.5)["press-1"].values["hydraulic_pressure"] for _ in range(60)]
    assert len(set(values[20:])) == 1
    assert len(set(values[:20])) > 5


def test_progressions() -> None:
    def make(progression: Progression) -> Fault:
        return Fault(
            1, "pump-1", "bearing_wear", 0.8, start_s=100.0, progression=progression, ramp_s=1000.0, end_s=2000.0
        )

    sudden, linear, exponential = (make(p) for p in (Progression.SUDDEN, Progression.LINEAR, Progression.EXPONENTIAL))
    assert [sudden.intensity(t) for t in (99.0, 100.0, 600.0)] == [0.0, 0.8, 0.8]
    assert linear.intensity(600.0) == pytest.approx(0.4)
    assert exponential.intensity(600.0) == pytest.approx(0.8 * math.expm1(2) / math.expm1(4))
    assert exponential.intensity(1100.0) == pytest.approx(0.8)
    assert exponential.intensity(600.0) < linear.intensity(600.0)
    assert not linear.present(2000.0)
    assert linear.intensity(2500.0) == 0.0


def test_bearing_wear_grows_vibration_then_heat() -> None:
    healthy, faulty = twins("cnc")
    faulty.faults.add("cnc-1", "bearing_wear", severity=1.0, start_s=0.0, ramp_s=3600)
    gaps = []
    for _ in range(7200):
        a, b = healthy.step(1.0)["cnc-1"].values, faulty.step(1.0)["cnc-1"].values
        gaps.append((b["vibration"] - a["vibration"], b["bearing_temperature"] - a["bearing_temperature"]))

    def window_mean(rows: list[tuple[float, float]], i: int) -> float:
        return sum(r[i] for r in rows) / len(rows)

    early, late = gaps[1700:1900], gaps[-200:]  # averaged over whole part programs
    assert window_mean(late, 0) > 3 * window_mean(early, 0) > 0
    assert window_mean(late, 1) > 5.0


@pytest.mark.parametrize(
    ("machine", "kwargs", "message"),
    [
        ("pump-1", {"fault": "melting"}, "unknown fault 'melting'"),
        ("press-1", {"fault": "cavitation"}, "does not apply to a press"),
        ("pump-1", {"fault": "sensor_drift"}, "needs a signal"),
        ("pump-1", {"fault": "sensor_drift", "signal": "spindle_speed"}, "has no signal 'spindle_speed'"),
        ("pump-1", {"fault": "imbalance", "signal": "flow"}, "remove signal"),
        ("pump-1", {"fault": "imbalance", "severity": 1.5}, "severity must be in"),
        ("pump-1", {"fault": "leak", "ramp_s": -5.0}, "must not be negative"),
        ("pump-1", {"fault": "leak", "progression": "sideways"}, "unknown progression"),
        ("robot-1", {"fault": "leak"}, "unknown machine"),
    ],
)
def test_bad_fault_requests_are_refused_with_a_fix(machine: str, kwargs: dict[str, object], message: str) -> None:
    plant = Plant(seed=1)
    with pytest.raises(SimulatorError, match=message) as info:
        plant.faults.add(machine, start_s=0.0, **kwargs)  # type: ignore[arg-type]
    assert "Fix:" in str(info.value)
    assert plant.faults.faults == []


def test_overlapping_exclusive_faults_are_refused() -> None:
    plant = Plant(seed=1)
    book = plant.faults
    book.add("pump-1", "imbalance", start_s=0.0, duration_s=100.0)
    book.add("pump-1", "imbalance", start_s=100.0)  # back to back is fine
    book.add("pump-1", "bearing_wear", start_s=50.0)  # different faults may coexist
    book.add("pump-1", "stuck_sensor", signal="flow", start_s=0.0, duration_s=10.0)
    with pytest.raises(SimulatorError, match="overlaps fault #1"):
        book.add("pump-1", "imbalance", start_s=90.0, duration_s=5.0)
    with pytest.raises(SimulatorError, match="overlaps"):
        book.add("pump-1", "sensor_drift", signal="flow", start_s=5.0)  # one sensor, one fault
    assert len(book.faults) == 4


def test_clear_ends_present_faults_and_drops_scheduled_ones() -> None:
    plant = Plant(seed=1)
    present = plant.faults.add("pump-1", "imbalance", start_s=0.0)
    plant.faults.add("pump-1", "leak", start_s=500.0)
    for _ in range(10):
        plant.step(1.0)
    assert [f.fault for f in plant.present_faults("pump-1")] == ["imbalance"]
    changed = plant.faults.clear("pump-1", None, None, plant.time_s)
    assert len(changed) == 2
    assert present.end_s == 10.0
    assert [f.fault for f in plant.faults.faults] == ["imbalance"]
    plant.step(1.0)
    assert plant.present_faults("pump-1") == []


@pytest.mark.parametrize(("fault", "kind"), PHYSICAL)
def test_every_physical_fault_stands_out_at_moderate_severity(fault: str, kind: str) -> None:
    """Learnable labels: in the second half-hour of a 0.6-severity fault, some signal's mean has
    moved by more than twice that signal's healthy spread (the healthy twin, same seed)."""
    healthy, faulty = twins(kind)
    faulty.faults.add(f"{kind}-1", fault, severity=0.6, start_s=0.0, progression="sudden")
    rows: list[list[dict[str, float]]] = [[], []]
    for _ in range(3600):
        rows[0].append(healthy.step(1.0)[f"{kind}-1"].values)
        rows[1].append(faulty.step(1.0)[f"{kind}-1"].values)
    scores = []
    for name in rows[0][0]:
        a = [r[name] for r in rows[0][1800:]]
        b = [r[name] for r in rows[1][1800:]]
        mean_a = sum(a) / len(a)
        spread = (sum((v - mean_a) ** 2 for v in a) / len(a)) ** 0.5
        scores.append(abs(sum(b) / len(b) - mean_a) / max(spread, 1e-9))
    assert max(scores) > 2.0


def test_intermittent_faults_come_and_go_reproducibly() -> None:
    fault = Fault(1, "pump-1", "cavitation", 0.7, start_s=100.0, progression=Progression.INTERMITTENT, ramp_s=30.0)
    slots = [fault.intensity(100.0 + 30.0 * k + 1.0) for k in range(40)]
    assert set(slots) == {0.0, 0.7}
    assert 10 < slots.count(0.7) < 30
    assert all(fault.intensity(100.0 + 30.0 * k + 29.0) == slots[k] for k in range(40))  # constant within a slot
    assert fault.present(100.0 + 30.0 * slots.index(0.0) + 1.0)  # off, yet present: the label stays on
    assert fault.intensity(99.0) == 0.0
