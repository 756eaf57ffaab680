"""The shipped demo settings, end to end in simulated time: the demo's past is learned, a healthy
plant raises nothing, an injected imbalance raises an explained alert on pump-1 within the
minute, and clearing the fault clears it.

``DEMO_ALERTS`` as shipped (no faster copy), the demo's own ``fast_forward`` and fault control,
and the plant the demo serves (``Simulation(seed=1)``), stepped as its timer steps it (0.1 s)
and read once a second like the demo's polls. tests/e2e/test_demo.py runs the same in real time.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

from edge_agent.alerts.config import AlertsConfig
from edge_agent.alerts.sink import AlertSink
from edge_agent.commands.demo import CLEAR_FAULTS, DEMO_ALERTS, fast_forward, fault_control
from edge_agent.core.origin import Origin
from edge_agent.core.samples import Batch, Sample
from simulators import Simulation
from tests.helpers.waiting import wait_until

START = 1_767_225_600.0  # the demo's start (Unix time): the past ends a minute before it
SEED = 1  # the demo's default


async def test_the_shipped_demo_learns_alerts_on_imbalance_and_clears(tmp_path: Path) -> None:
    config = AlertsConfig.model_validate({**DEMO_ALERTS, "data_dir": str(tmp_path), "queue_rows": 40_000})
    events: list[tuple[float, dict[str, Any]]] = []
    sim = Simulation(seed=SEED, opcua_port=None, modbus_port=None)  # the demo's plant, not served
    sink = AlertSink(config, on_alert=lambda origin, event: events.append((sim.plant.time_s, event)))
    await sink.start()
    origins = {machine: Origin("demo", "lab", "line-1", machine) for machine in sim.machine_ids}

    past = fast_forward(SEED, DEMO_ALERTS, end_s=START)
    assert list(past) == sim.machine_ids, "the past is of the machines the demo serves"
    for machine, batches in past.items():
        assert batches[-1].polled_at_ns <= (START - 60) * 1e9
        for batch in batches:
            await sink.submit(batch, origins[machine])
    await wait_until(lambda: all(sink.idle(m) for m in sim.machine_ids), 300, "the past to be learned")
    for machine in sim.machine_ids:
        stats = sink.stats(machine)
        assert stats.learned, (machine, stats)
        assert stats.error is None
        assert stats.scored == 0, "the past ends where learning starts: nothing of it is scored"
        assert stats.dropped_rows == 0

    async def poll(seconds: int, until: Callable[[], bool] = lambda: False) -> float:
        """Step the plant as the demo's timer does and hand each machine's reading over every second."""
        for _ in range(seconds):
            for _ in range(10):
                sim.plant.step(0.1)
            ns = int((START + sim.plant.time_s) * 1e9)
            for machine, reading in sim.plant.readings().items():
                samples = (
                    *(Sample(name, value, ns) for name, value in reading.values.items()),
                    Sample("state_code", int(reading.state), ns),
                )
                await sink.submit(Batch(machine, samples, ns), origins[machine])
            await wait_until(lambda: all(sink.idle(m) for m in sim.machine_ids), 60, "the engine to catch up")
            if until():
                break
        return sim.plant.time_s

    def kinds(machine: str) -> list[str]:
        return [event["event"] for _, event in events if event["machine"] == machine]

    await poll(120)
    assert events == [], "no alert on the healthy plant"
    assert all(sink.stats(m).scored > 0 for m in sim.machine_ids)

    inject, choices = fault_control(sim)
    assert "imbalance" in choices["pump-1"]
    await inject("pump-1", "imbalance")
    injected = sim.plant.time_s
    raised_at = await poll(120, lambda: "raised" in kinds("pump-1"))
    assert kinds("pump-1") == ["raised"], events
    assert raised_at - injected <= 60, f"the alert came {raised_at - injected:.0f} s after the fault"
    event = events[0][1]
    assert event["signals"][0]["signal"] == "vibration_rms"
    assert event["hint"] is not None
    assert "imbalance" in event["hint"]["cause"]

    await inject("pump-1", CLEAR_FAULTS)
    cleared = sim.plant.time_s
    cleared_at = await poll(300, lambda: "cleared" in kinds("pump-1"))
    assert kinds("pump-1")[-1] == "cleared", events
    assert cleared_at - cleared <= 120, f"the alert cleared {cleared_at - cleared:.0f} s after the fault"
    assert kinds("press-1") == [], "no alert on the other machine"
    await sink.close()
