"""A machine with too few windows to learn keeps collecting and says how far it is; only what
waiting cannot mend is an error, and a failed learning never starts over the same way.

The alert engine is fed a simulated pump (simulated time, a reading a second) whose operating
state the test holds, as ``Simulation.set_mode`` does.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from edge_agent.alerts.config import AlertsConfig
from edge_agent.alerts.sink import AlertSink
from edge_agent.core.origin import Origin
from edge_agent.core.samples import Batch, Sample
from edge_agent.web.snapshot import model_json
from models.model import MIN_WINDOWS, MachineModel
from simulators.physics import MachineState
from simulators.plant import Plant
from tests.helpers.waiting import wait_until

ORIGIN = Origin("site", "hall", "line-1", "pump-1")
T0 = 1_767_225_600.0
STATE = {"signal": "state_code", "codes": {"0": "off", "1": "idle", "2": "running", "3": "setup"}}


def engine(tmp_path: Path, **extra: Any) -> AlertSink:
    config = AlertsConfig.model_validate(
        {"window": "20s", "hop": "5s", "state": STATE, "data_dir": str(tmp_path), **extra}
    )
    return AlertSink(config, on_alert=lambda origin, event: None)


async def run(sink: AlertSink, plant: Plant, seconds: int, state: MachineState, *, constant: bool = False) -> None:
    """``seconds`` of the pump held in ``state``, a reading a second, as a poll gives them."""
    plant.machine("pump-1").forced_state = state
    for _ in range(seconds):
        plant.step(1.0)
        ns = int((T0 + plant.time_s) * 1e9)
        reading = plant.readings()["pump-1"]
        values = {name: (1.0 if constant else value) for name, value in reading.values.items()}
        samples = (*(Sample(n, v, ns) for n, v in values.items()), Sample("state_code", int(reading.state), ns))
        await sink.submit(Batch("pump-1", samples, ns), ORIGIN)
    await wait_until(lambda: sink.idle("pump-1"), 60, "the engine to catch up")


async def test_too_few_windows_in_any_one_state_keeps_learning_and_says_how_far(tmp_path: Path) -> None:
    # 40 windows planned over running and idle; each state needs 34 of its own.
    sink = engine(tmp_path, learn_after="200s", learn_states=["running", "idle"])
    await sink.start()
    plant = Plant(5, ["pump-1"])
    assert model_json(sink, "pump-1") == {
        "state": "learning", "windows": 0, "needed": 40, "version": None, "trained": None, "retrains": 0,
        "pinned": False, "error": None,
    }  # fmt: skip
    await run(sink, plant, 150, MachineState.RUNNING)  # 27 running windows
    await run(sink, plant, 90, MachineState.IDLE)  # mixed ones, then idle ones: 40 or more in all
    stats = sink.stats("pump-1")
    assert not stats.learned
    assert stats.error is None
    windows, needed = sink.learning_progress("pump-1")
    assert windows >= 40, "the plan is met, yet no state has enough"
    running = 27
    assert needed == windows + MIN_WINDOWS - running
    shown = model_json(sink, "pump-1")
    assert shown is not None
    assert (shown["state"], shown["windows"], shown["needed"]) == ("learning", windows, needed)
    assert not (tmp_path / "pump-1" / "model.npz").exists()

    # Running again: learning starts on the window that gives running its 34th, from every window kept.
    await run(sink, plant, 40, MachineState.RUNNING)
    assert not sink.stats("pump-1").learned
    await run(sink, plant, 30, MachineState.RUNNING)
    stats = sink.stats("pump-1")
    assert stats.learned, sink.learning_progress("pump-1")
    assert stats.error is None
    model = MachineModel.load(tmp_path / "pump-1" / "model.npz")
    assert model.states["running"].n_windows == MIN_WINDOWS
    assert "idle" not in model.states, "idle has fewer than 34 windows: not learned, never scored"
    ready = model_json(sink, "pump-1")
    assert ready is not None
    assert ready["state"] == "ready"
    await sink.close()


async def test_a_machine_that_ran_less_than_planned_shows_its_windows_against_the_plan(tmp_path: Path) -> None:
    sink = engine(tmp_path, learn_after="300s")  # 60 windows
    await sink.start()
    plant = Plant(6, ["pump-1"])
    await run(sink, plant, 100, MachineState.RUNNING)  # 17 windows
    await run(sink, plant, 200, MachineState.SETUP)  # none: setup is not learned
    assert sink.learning_progress("pump-1") == (17, 60)
    assert sink.stats("pump-1").not_scored > 0
    await run(sink, plant, 60 + 5 * 43, MachineState.RUNNING)
    assert sink.stats("pump-1").learned
    await sink.close()


async def test_learning_that_fails_on_the_data_is_an_error_with_a_fix_and_is_not_retried(tmp_path: Path) -> None:
    sink = engine(tmp_path, learn_after="170s")
    await sink.start()
    plant = Plant(7, ["pump-1"])
    await run(sink, plant, 200, MachineState.RUNNING, constant=True)  # every signal frozen at 1.0
    stats = sink.stats("pump-1")
    assert not stats.learned
    assert stats.error is not None
    assert "Fix:" in stats.error
    assert "learning stopped until the agent restarts" in stats.error
    shown = model_json(sink, "pump-1")
    assert shown is not None
    assert shown["state"] == "error"
    windows = stats.windows
    await run(sink, plant, 400, MachineState.RUNNING, constant=True)
    assert stats.windows > windows
    assert stats.training_windows == 0, "no windows are collected for another attempt that would fail the same way"
    assert not (tmp_path / "pump-1" / "training.f64").exists()
    await sink.close()
