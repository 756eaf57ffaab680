"""Small parts with sharp edges: durations, bounded history, CLI argument conflicts, double start."""

from __future__ import annotations

import asyncio
import math
from pathlib import Path

import pytest

from simulators import Simulation, SimulatorError
from simulators.cli import main
from simulators.durations import parse_duration
from simulators.history import ServedHistory


@pytest.mark.parametrize(
    ("text", "seconds"),
    [("500ms", 0.5), ("90s", 90.0), ("1h30m", 5400.0), ("7d", 604800.0), (" 2 m ", 120.0), ("-5m", -300.0), (3, 3.0)],
)
def test_durations(text: str | int, seconds: float) -> None:
    assert parse_duration(text) == seconds


@pytest.mark.parametrize("bad", ["", "soon", "5 minutes", "1h-5m", True, math.inf, None])
def test_bad_durations_say_which_forms_work(bad: object) -> None:
    with pytest.raises(ValueError, match="'2s'"):
        parse_duration(bad)


def test_served_history_is_bounded() -> None:
    history = ServedHistory(depth=3)
    for t in range(10):
        history.record("modbus", "pump-1", {"flow": float(t)}, t)
    assert history.get("modbus", "pump-1", "flow") == [(7, 7.0), (8, 8.0), (9, 9.0)]
    assert history.get("opcua", "pump-1", "flow") == []


async def test_a_running_simulation_cannot_start_twice() -> None:
    async with Simulation(opcua_port=None, modbus_port=None) as sim:
        with pytest.raises(SimulatorError, match="already running"):
            await sim.start()


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (
            ["record", "--scenario", "x.yaml", "--seed", "3", "--duration", "1h", "--out", "o.csv"],
            "come from the scenario",
        ),
        (["run", "--scenario", "missing.yaml"], "cannot read the file"),
        (["describe", "--machines", "pump-1", "--scenario", "x.yaml"], "pass one of them"),
    ],
)
def test_cli_argument_conflicts_are_refused(argv: list[str], message: str, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(argv) == 2
    assert message in capsys.readouterr().err


def test_record_without_a_scenario_uses_seed_and_machines(tmp_path: Path) -> None:
    out = tmp_path / "cnc.csv"
    assert main(["record", "--machines", "cnc-1", "--seed", "4", "--duration", "2m", "--out", str(out)]) == 0
    header, *rows = out.read_text().splitlines()
    assert header.startswith("timestamp,time_s,spindle_speed,spindle_load,")
    assert len(rows) == 120


async def test_waiting_on_a_stopped_simulation_raises_instead_of_hanging() -> None:
    sim = Simulation(opcua_port=None, modbus_port=None, update_interval=5.0)
    with pytest.raises(SimulatorError, match="not running"):
        await sim.wait_updates(1)
    await sim.start()
    waiter = asyncio.create_task(sim.wait_updates(100), name="test-waiter")
    await asyncio.sleep(0)  # let the waiter start waiting
    await sim.stop()
    async with asyncio.timeout(5):
        with pytest.raises(SimulatorError, match="stopped while waiting"):
            await waiter
