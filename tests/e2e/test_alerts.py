"""A fault injected into a simulated machine raises an explained alert on MQTT, and it clears.

The whole agent runs (pollers, outbox, publisher, alert engine) against the simulators and a
real Mosquitto. Wall-clock time, so the windows are short (1 s, hop 0.5 s) and the normal is
learned in 20 s; docs/models.md gives the delays for the default settings.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import paho.mqtt.client as mqtt
import pytest
from paho.mqtt.enums import CallbackAPIVersion

from edge_agent.commands.demo import DEMO_ALERTS, demo_config
from edge_agent.runtime.agent import Agent
from edge_agent.runtime.config import AgentConfig
from simulators import Simulation
from tests.helpers.servers import Mosquitto, unique_name
from tests.helpers.waiting import wait_until


@pytest.fixture
async def sim() -> AsyncIterator[Simulation]:
    async with Simulation(seed=21, update_interval=0.05) as simulation:
        yield simulation


async def test_injected_fault_raises_an_explained_alert_that_clears(
    sim: Simulation, mosquitto: Mosquitto, tmp_path: Path
) -> None:
    prefix = unique_name("alerts")
    alerts = {
        **DEMO_ALERTS,
        "window": "1s",
        "hop": "0.5s",
        "learn_after": "20s",
        "cooldown": "0s",
        "clear_after": 3,
        "data_dir": str(tmp_path / "models"),
        # 20 s of learning cannot cover the press's slow cycle; the press's own quality is
        # measured offline (bench/alert_quality.py), this test is about the path through the agent.
        "machines": {"press-1": {"enabled": False}},
    }
    base = demo_config(sim, alerts=alerts).model_dump(mode="json", exclude_unset=True)
    for machine in base["machines"]:
        machine["interval"] = "100ms"
    base["mqtt"] = {"host": "127.0.0.1", "port": mosquitto.port, "topic_prefix": prefix}
    base["outbox"] = {"path": str(tmp_path / "outbox.sqlite")}
    config = AgentConfig.model_validate(base)

    events: list[dict[str, Any]] = []
    listener = mqtt.Client(callback_api_version=CallbackAPIVersion.VERSION2)
    listener.on_message = lambda _c, _u, m: events.append(json.loads(m.payload))
    listener.connect("127.0.0.1", mosquitto.port)
    listener.subscribe(f"{prefix}/+/+/+/pump-1/alerts", qos=1)
    listener.loop_start()
    agent = Agent(config)
    stop = asyncio.Event()
    task = asyncio.create_task(agent.run(stop), name="agent-under-test")
    try:
        assert agent.alerts is not None
        await wait_until(
            lambda: agent.alerts is not None and agent.alerts.stats("pump-1").learned,
            60,
            "pump-1's normal learned",
            detail=lambda: agent.alerts.stats("pump-1") if agent.alerts else "",
        )
        assert not events, f"an alert on a healthy machine: {events}"
        sim.inject_fault("pump-1", "imbalance", severity=1.0, progression="sudden")
        await wait_until(lambda: any(e["event"] == "raised" for e in events), 30, "the alert on MQTT")
        raised = next(e for e in events if e["event"] == "raised")
        assert raised["machine"] == "pump-1"
        assert raised["summary"]
        assert raised["signals"], "the alert names the signals that drive it"
        assert raised["signals"][0]["signal"] == "vibration_rms"
        assert 0 < raised["signals"][0]["percent"] <= 100
        assert raised["hint"]["cause"]
        assert raised["since"]
        assert raised["model_version"]
        assert [a["machine"] for a in agent.alert_board.active()] == ["pump-1"]
        sim.clear_fault("pump-1")
        await wait_until(lambda: any(e["event"] == "cleared" for e in events), 60, "the alert cleared")
        assert agent.alert_board.active() == []
        assert not any(e["machine"] != "pump-1" for e in events)
    finally:
        stop.set()
        await asyncio.wait_for(task, 10)
        listener.loop_stop()
        listener.disconnect()
    assert sim.write_count == 0
