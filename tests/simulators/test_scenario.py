"""Scenario files: checked whole before anything starts, every problem located, runs reproducible."""

from __future__ import annotations

import asyncio
import csv
import io
import json
from pathlib import Path

import pytest

from simulators import MachineState, ScenarioError, Simulation, SimulatorError
from simulators.cli import main
from simulators.dataset import dataset
from simulators.record import write_csv
from simulators.scenario import load_scenario, parse_scenario

SCENARIOS = Path(__file__).parents[2] / "simulators" / "scenarios"

GOOD = """\
seed: 3
start: 2026-03-01T00:00:00Z
machines: [pump-1]
modes:
  - {machine: pump-1, state: off, at: 30m, duration: 10m}
faults:
  - {machine: pump-1, fault: imbalance, at: 10m, duration: 5m, severity: 0.5}
  - {machine: pump-1, fault: stuck_sensor, signal: flow, at: 50m}
"""


def record_text(text: str, seconds: float) -> str:
    out = io.StringIO()
    write_csv(parse_scenario(text), seconds, out)
    return out.getvalue()


def test_bundled_scenarios_are_valid() -> None:
    files = sorted(SCENARIOS.glob("*.yaml"))
    assert files
    for path in files:
        scenario = load_scenario(path)
        assert scenario.build_plant().faults.faults


def test_recording_is_reproducible_and_labelled() -> None:
    text = record_text(GOOD, 3600)
    assert text == record_text(GOOD, 3600)
    rows = list(csv.DictReader(io.StringIO(text)))
    assert len(rows) == 3600
    assert rows[0]["timestamp"] == "2026-03-01T00:00:01.000+00:00"
    assert list(rows[0])[:7] == ["timestamp", "time_s", "flow", "outlet_pressure", "motor_current",
                                 "motor_temperature", "vibration_rms"]  # fmt: skip
    by_second = {round(float(r["time_s"])): r for r in rows}
    assert by_second[599]["anomaly"] == "0"
    assert by_second[600]["anomaly"] == "1"
    assert by_second[600]["fault"] == "imbalance"
    assert by_second[600]["fault_intensity"] == "0.5"
    assert by_second[900]["anomaly"] == "0"  # the imbalance lasted 5 minutes
    assert by_second[1900]["state"] == "off"
    assert by_second[2500]["state"] != "off"
    assert by_second[3100]["fault"] == "stuck_sensor:flow"
    assert len({by_second[s]["flow"] for s in range(3100, 3600)}) == 1


def test_scenario_drives_a_live_simulation_at_speed() -> None:
    async def scenario_run() -> None:
        async with Simulation(
            scenario=parse_scenario(GOOD), update_interval=0.02, time_scale=1500, opcua_port=None, modbus_port=None
        ) as sim:
            assert sim.machine_ids == ["pump-1"]
            async with asyncio.timeout(10):
                while sim.plant.time_s < 1850:
                    await sim.wait_updates(1)
            assert sim.plant.machine("pump-1").state is MachineState.OFF
            truth = sim.ground_truth()
            assert truth[0].fault == "imbalance"
            assert truth[0].start_ns is not None
            assert truth[0].end_ns is not None

    asyncio.run(scenario_run())


@pytest.mark.parametrize(
    ("text", "key", "line", "fix"),
    [
        ("faults:\n  - {machine: pump-1, fault: melting}\n", "faults[0].fault", 2, "use one of"),
        ("faults:\n  - {machine: press-1, fault: sensor_drift, signal: flow}\n", "faults[0].signal", 2, "use one of"),
        ("faults:\n  - {machine: robot-9, fault: leak}\n", "faults[0].machine", 2, "use one of"),
        ("faults:\n  - {machine: pump-1, fault: leak, ramp: -1h}\n", "faults[0].ramp", 2, "ramp: 2h"),
        ("faults:\n  - {machine: pump-1, fault: leak, at: -5m}\n", "faults[0].at", 2, "at: 2h"),
        ("faults:\n  - {machine: pump-1, fault: leak, duration: -5m}\n", "faults[0].duration", 2, "duration: 6h"),
        ("modes:\n  - {machine: pump-1, state: idle, duration: -1h}\n", "modes[0].duration", 2, "8h"),
        ("seed: 1\nsped: 2\n", "sped", 2, "remove it"),
        ("faults:\n  - machine: pump-1\n    fault: leak\n    colour: red\n", "faults[0].colour", 4, "remove it"),
        ("step: soon\n", "step", 1, "'500ms'"),
        ("modes:\n  - {machine: pump-1, state: asleep}\n", "modes[0].state", 2, "correct the value"),
    ],
)
def test_bad_scenarios_name_file_line_key_and_fix(text: str, key: str, line: int, fix: str) -> None:
    with pytest.raises(ScenarioError) as info:
        parse_scenario(text, "plant.yaml")
    problems = info.value.problems
    assert [p.key for p in problems] == [key], problems
    assert problems[0].line == line
    assert fix in problems[0].message
    assert str(info.value).startswith("plant.yaml: 1 problem(s)")


def test_overlapping_exclusive_faults_and_modes_are_located() -> None:
    text = """\
faults:
  - {machine: pump-1, fault: bearing_wear, at: 1h}
  - {machine: pump-1, fault: bearing_wear, at: 2h}
  - {machine: pump-1, fault: stuck_sensor, signal: flow, at: 0s, duration: 2h}
  - {machine: pump-1, fault: noisy_sensor, signal: flow, at: 1h}
  - {machine: pump-1, fault: imbalance, at: 1h}
modes:
  - {machine: press-1, state: setup, at: 1h, duration: 1h}
  - {machine: press-1, state: idle, at: 90m}
"""
    with pytest.raises(ScenarioError) as info:
        parse_scenario(text, "s.yaml")
    located = {(p.key, p.line) for p in info.value.problems}
    assert located == {("faults[1]", 3), ("faults[3]", 5), ("modes[1]", 9)}
    messages = {p.key: p.message for p in info.value.problems}
    assert messages["faults[1]"].startswith("overlaps faults[0] (bearing_wear on pump-1)")
    assert messages["faults[3]"].startswith("overlaps faults[2] (stuck_sensor on flow on pump-1)")
    assert all("Fix:" in p.message for p in info.value.problems)


def test_bad_yaml_and_missing_file() -> None:
    with pytest.raises(ScenarioError, match=r"broken.yaml: line 3: \(top level\): not valid YAML: .* Fix:"):
        parse_scenario("seed: 1\nfaults: [a\nb: 2\n", "broken.yaml")
    with pytest.raises(ScenarioError, match="cannot read the file"):
        load_scenario("/nonexistent/scenario.yaml")


def test_cli_record_writes_csv_and_refuses_bad_scenarios(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    scenario = tmp_path / "s.yaml"
    scenario.write_text(GOOD)
    out, truth = tmp_path / "data.csv", tmp_path / "truth.json"
    command = ["record", "--scenario", str(scenario), "--duration", "55m", "--step", "10s", "--out", str(out)]
    assert main([*command, "--truth", str(truth)]) == 0
    assert len(out.read_text().splitlines()) == 1 + 330
    timeline = json.loads(truth.read_text())
    assert [(t["fault"], t["start"], t["end"], t["severity"]) for t in timeline] == [
        ("imbalance", "2026-03-01T00:10:00.000+00:00", "2026-03-01T00:15:00.000+00:00", 0.5),
        ("stuck_sensor", "2026-03-01T00:50:00.000+00:00", None, 1.0),
    ]
    assert not (tmp_path / "data.csv.part").exists()
    bad = tmp_path / "bad.yaml"
    bad.write_text("faults:\n  - {machine: pump-1, fault: melting}\n")
    refused = tmp_path / "refused.csv"
    assert main(["record", "--scenario", str(bad), "--duration", "1h", "--out", str(refused)]) == 2
    err = capsys.readouterr().err
    assert f"{bad}: line 2: faults[0].fault: unknown fault 'melting'" in err
    assert not refused.exists()
    assert not (tmp_path / "refused.csv.part").exists()


def test_hours_at_one_hertz_are_a_row_per_second_with_the_fault_labelled() -> None:
    """Six simulated hours of one pump: 21,600 rows, healthy before the fault, labelled after it.

    How fast ``record`` is (rows/s against a baseline) is measured by bench/simulator_load.py.
    """
    text = record_text("machines: [pump-1]\nfaults:\n  - {machine: pump-1, fault: bearing_wear, at: 1h}\n", 6 * 3600)
    rows = list(csv.DictReader(io.StringIO(text)))
    assert len(rows) == 6 * 3600
    assert {row["anomaly"] for row in rows if float(row["time_s"]) < 3600} == {"0"}
    assert {row["anomaly"] for row in rows if float(row["time_s"]) >= 3600} == {"1"}


def test_dataset_arrays_match_the_csv() -> None:
    data = dataset(parse_scenario(GOOD), "1h")
    rows = list(csv.DictReader(io.StringIO(record_text(GOOD, 3600))))
    assert data.machine_id == "pump-1"
    assert data.signals == ["flow", "outlet_pressure", "motor_current", "motor_temperature", "vibration_rms"]
    assert data.values.shape == (3600, 5)
    for i in (0, 599, 600, 1900, 3599):
        assert data.values[i] == pytest.approx([float(rows[i][s]) for s in data.signals], rel=1e-5, abs=1e-9)
        assert data.fault[i] == rows[i]["fault"]
    assert [bool(int(r["anomaly"])) for r in rows] == data.anomaly.tolist()
    assert data.state[1900] == int(MachineState.OFF)
    with pytest.raises(SimulatorError, match="pass machine_id"):
        dataset(parse_scenario("machines: [pump-1, cnc-1]"), "1m")
    assert dataset(parse_scenario("machines: [pump-1, cnc-1]"), "1m", machine_id="cnc-1", step="10s").values.shape == (
        6,
        6,
    )


def test_load_windows_drive_cause_and_effect() -> None:
    text = """\
machines: [pump-1]
modes: [{machine: pump-1, state: running}]
loads:
  - {machine: pump-1, load: 0.3, at: 0s, duration: 1h}
  - {machine: pump-1, load: 1.0, at: 1h}
"""
    data = dataset(parse_scenario(text), "2h", step="10s")
    current = data.values[:, data.signals.index("motor_current")]
    temperature = data.values[:, data.signals.index("motor_temperature")]
    assert current[365:370].mean() > current[350:359].mean() + 3  # within a minute of the step
    assert temperature[361] - temperature[358] < 1.0  # temperature lags the step...
    assert temperature[-1] - temperature[358] > 5.0  # ...and follows it over the next hour


@pytest.mark.parametrize(
    ("text", "key"),
    [
        ("loads:\n  - {machine: pump-1, load: 1.5}\n", "loads[0].load"),
        ("loads:\n  - {machine: pump-1, load: 0.5, duration: 0s}\n", "loads[0].duration"),
        ("loads:\n  - {machine: pump-1, load: 0.5}\n  - {machine: pump-1, load: 0.7, at: 1h}\n", "loads[1]"),
    ],
)
def test_bad_load_windows_are_located(text: str, key: str) -> None:
    with pytest.raises(ScenarioError) as info:
        parse_scenario(text)
    assert [p.key for p in info.value.problems] == [key]
    assert info.value.problems[0].line is not None
