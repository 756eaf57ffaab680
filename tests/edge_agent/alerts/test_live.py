"""AlertSink on real polls: the Modbus connector reads a live simulator, a fault is injected.

Wall-clock time here, so windows are short (1 s) and polls fast; the point is that real
batches (float32 registers, a uint16 state code, a counter, source timestamps) flow through
learning and scoring, and an injected fault raises an alert with the right signal on top.
"""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

from edge_agent.alerts.config import AlertsConfig
from edge_agent.alerts.sink import AlertSink
from edge_agent.core.origin import Origin
from simulators import Simulation
from tests.helpers.simconfig import modbus_machine
from tests.helpers.waiting import wait_until


async def test_live_modbus_polls_learn_and_alert(tmp_path: Path) -> None:
    events: list[dict[str, Any]] = []
    config = AlertsConfig.model_validate(
        {
            "window": "1s",
            "hop": "0.5s",
            "learn_after": "20s",
            "cooldown": "0s",
            "data_dir": str(tmp_path),
            "state": {"signal": "state_code", "codes": {"0": "off", "1": "idle", "2": "running", "3": "setup"}},
            "machines": {"pump-1": {"signals": ["flow", "outlet_pressure", "motor_current", "vibration_rms"]}},
        }
    )
    sink = AlertSink(config, lambda origin, event: events.append(event))
    origin = Origin("site", "hall", "line", "pump-1")
    async with Simulation(seed=3, machines=["pump-1"], update_interval=0.02, opcua_port=None) as sim:
        connector = modbus_machine(sim, "pump-1", interval="20ms").build_connector()
        await connector.connect()
        await sink.start()
        stop = asyncio.Event()

        async def poll() -> None:
            while not stop.is_set():
                await sink.submit(await connector.read(), origin)
                await sim.wait_updates(1)

        poller = asyncio.create_task(poll())
        try:
            await wait_until(lambda: sink.stats("pump-1").learned, 60, "the model to be learned from live polls",
                             detail=lambda: sink.stats("pump-1"))  # fmt: skip
            assert events == []
            sim.inject_fault("pump-1", "imbalance", severity=1.0)
            await wait_until(lambda: any(e["event"] == "raised" for e in events), 20, "an alert after the fault",
                             detail=lambda: sink.stats("pump-1"))  # fmt: skip
        finally:
            stop.set()
            await poller
            await connector.close()
            await sink.close()
        assert sim.write_count == 0
    raised = next(e for e in events if e["event"] == "raised")
    assert raised["signals"][0]["signal"] == "vibration_rms"
