"""Physics sanity: cause and effect, lags, cycles and determinism, without any server."""

from __future__ import annotations

import pytest

from simulators import MachineState, Plant
from simulators.physics.press import HydraulicPress
from simulators.physics.pump import CentrifugalPump


def run(model: CentrifugalPump | HydraulicPress, seconds: float, dt: float = 1.0) -> list[dict[str, float]]:
    return [model.step(dt) for _ in range(round(seconds / dt))]


def mean(rows: list[dict[str, float]], name: str) -> float:
    return sum(r[name] for r in rows) / len(rows)


def test_pump_current_and_flow_rise_with_load() -> None:
    low, high = CentrifugalPump("pump-1", 3), CentrifugalPump("pump-1", 3)
    low.forced_load, high.forced_load = 0.3, 0.9
    low_rows, high_rows = run(low, 60), run(high, 60)
    assert mean(high_rows, "flow") > mean(low_rows, "flow") + 10
    assert mean(high_rows, "motor_current") > mean(low_rows, "motor_current") + 2
    assert mean(high_rows, "outlet_pressure") < mean(low_rows, "outlet_pressure")  # pump curve falls with flow


def test_pump_temperature_lags_current() -> None:
    pump = CentrifugalPump("pump-1", 5)
    pump.forced_load = 0.25
    run(pump, 6 * 3600, dt=10.0)  # settle at low load
    before = run(pump, 60)
    pump.forced_load = 1.0
    soon = run(pump, 20)
    later = run(pump, 3 * 3600, dt=10.0)
    current_jump = mean(soon[-5:], "motor_current") - mean(before, "motor_current")
    total_rise = mean(later[-10:], "motor_temperature") - mean(before, "motor_temperature")
    early_rise = mean(soon[-5:], "motor_temperature") - mean(before, "motor_temperature")
    assert current_jump > 3.0, "current follows load within seconds"
    assert total_rise > 5.0, "more current heats the motor"
    assert early_rise < 0.15 * total_rise, "temperature lags: 20 s after the step it has barely moved"


def test_stopped_pump_draws_no_current_and_cools() -> None:
    pump = CentrifugalPump("pump-1", 1)
    pump.forced_state = MachineState.OFF
    rows = run(pump, 4 * 3600, dt=10.0)
    assert rows[-1]["motor_current"] == 0.0
    assert rows[-1]["flow"] == 0.0
    assert rows[-1]["motor_temperature"] < rows[0]["motor_temperature"] - 10
    assert pump.state is MachineState.OFF


def test_press_cycles_make_parts_and_pressure_peaks() -> None:
    press = HydraulicPress("press-1", 2)
    press.forced_state = MachineState.RUNNING
    rows = run(press, 80, dt=0.1)
    pressures = [r["hydraulic_pressure"] for r in rows]
    assert max(pressures) > 120
    assert min(pressures) < 30
    assert 8 <= press.parts_count <= 11  # about 8 s per part
    assert 7.0 < rows[-1]["cycle_time"] < 9.5
    peak = max(range(len(rows)), key=lambda i: rows[i]["hydraulic_pressure"])
    trough = min(range(len(rows)), key=lambda i: rows[i]["hydraulic_pressure"])
    assert rows[peak]["motor_current"] > rows[trough]["motor_current"] + 10  # current follows pressure


def test_signals_change_between_one_second_polls() -> None:
    plant = Plant(seed=4)
    previous = plant.readings()
    for _ in range(5):
        for _ in range(10):
            current = plant.step(0.1)
        for machine_id, reading in current.items():
            for name, value in reading.values.items():
                if name == "cycle_time":
                    continue  # changes once per part, tested above
                assert value != previous[machine_id].values[name], (machine_id, name)
        previous = current


@pytest.mark.parametrize("dt", [0.1, 1.0])
def test_same_seed_same_steps_same_values(dt: float) -> None:
    a, b, c = Plant(seed=7), Plant(seed=7), Plant(seed=8)
    for _ in range(300):
        ra, rb, rc = a.step(dt), b.step(dt), c.step(dt)
    assert ra == rb
    assert ra != rc


def test_adding_a_machine_does_not_change_the_others() -> None:
    alone = Plant(seed=3, machines=["pump-1"])
    crowd = Plant(seed=3, machines=["press-1", "pump-1", "pump-2"])
    for _ in range(100):
        a, b = alone.step(0.5), crowd.step(0.5)
    assert a["pump-1"] == b["pump-1"]
    assert b["pump-1"].values != b["pump-2"].values


def test_cnc_program_makes_parts_with_speed_and_load_pattern() -> None:
    plant = Plant(seed=1, machines=["cnc-1"])
    cnc = plant.machine("cnc-1")
    cnc.forced_state = MachineState.RUNNING
    rows = [plant.step(0.5)["cnc-1"].values for _ in range(2 * 220)]  # 220 s, ~2 parts
    assert cnc.parts_count == 2
    speeds = [r["spindle_speed"] for r in rows]
    assert max(speeds) > 11500
    assert min(speeds) < 50
    busy = [r for r in rows if r["spindle_load"] > 50]
    light = [r for r in rows if 5 < r["spindle_load"] < 35]
    assert busy
    assert light
    assert mean(busy, "motor_current") > mean(light, "motor_current") + 5


def test_conveyor_and_compressor_motors() -> None:
    plant = Plant(seed=2, machines=["conveyor-1", "compressor-1"])
    for model in plant.machines.values():
        model.forced_state = MachineState.RUNNING
        model.forced_load = 0.6
    rows = [plant.step(1.0) for _ in range(900)]
    conveyor = [r["conveyor-1"].values for r in rows]
    compressor = [r["compressor-1"].values for r in rows]
    assert 1440 < mean(conveyor, "speed") < 1500
    assert plant.machine("conveyor-1").parts_count > 50
    currents = [r["motor_current"] for r in compressor]
    assert max(currents) - min(currents) > 4  # load / unload cycles
    assert plant.machine("compressor-1").parts_count >= 4  # ~150 s per load cycle at 60 % demand
    loaded = [r for r in compressor if r["motor_current"] > 12]
    unloaded = [r for r in compressor if r["motor_current"] < 10]
    assert mean(loaded, "speed") < mean(unloaded, "speed")  # slip grows with load


@pytest.mark.parametrize("kind", ["pump", "press", "cnc", "conveyor", "compressor"])
def test_every_kind_is_deterministic_and_finite(kind: str) -> None:
    a, b = Plant(seed=9, machines=[f"{kind}-1"]), Plant(seed=9, machines=[f"{kind}-1"])
    for _ in range(2000):
        ra, rb = a.step(1.0), b.step(1.0)
    assert ra == rb
    assert all(v == v and abs(v) < 1e5 for v in ra[f"{kind}-1"].values.values())


def test_temperatures_follow_the_daily_ambient_swing() -> None:
    pump = CentrifugalPump("pump-1", 1)
    pump.forced_state = MachineState.OFF
    rows = run(pump, 3 * 86400, dt=60.0)[-1440:]  # the third day, cooled to ambient
    temps = [r["motor_temperature"] for r in rows]
    coolest = min(range(len(temps)), key=temps.__getitem__)
    assert 4.0 < max(temps) - min(temps) < 7.0
    assert 6 * 60 <= coolest <= 8 * 60  # 6 h after the start of the day, plus the thermal lag
