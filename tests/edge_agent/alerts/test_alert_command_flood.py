"""Hostile acknowledge commands: deeply nested JSON, invalid UTF-8, thousands of junk commands.

Each one is refused with a reply, the agent goes on, the log stays a few lines long, and a valid
acknowledge afterwards still acknowledges the alert. The whole agent runs against a simulated
pump and a real Mosquitto; the open alert is one the agent finds on disk at start, so no model
has to be learned first.
"""

from __future__ import annotations

import asyncio
import gc
import json
import logging
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import paho.mqtt.client as mqtt
import pytest
from paho.mqtt.enums import CallbackAPIVersion

from edge_agent.alerts.commands import parse_ack, request_id_of
from edge_agent.alerts.config import AlertsConfig
from edge_agent.alerts.sink import AlertSink
from edge_agent.core.errors import CommandError
from edge_agent.core.origin import Origin
from edge_agent.runtime.agent import Agent
from edge_agent.runtime.config import AgentConfig
from models.alerts import AlertState
from simulators import Simulation
from tests.helpers.servers import Mosquitto, unique_name
from tests.helpers.waiting import wait_until

ORIGIN = Origin("s", "a", "l", "pump-1")
NESTED_LIST = b"[" * 2000 + b"]" * 2000
NESTED_OBJECT = b'{"alert_id": ' + b"[" * 2000 + b"]" * 2000 + b', "by": "ana"}'
JUNK_COMMANDS = 5000


def junk(index: int) -> bytes:
    """A few kinds of wrong command, each with its own particulars."""
    kinds = [
        b"\xff\xfe" + index.to_bytes(4, "big") + b"\x80",  # not UTF-8
        b"ack " + str(index).encode(),  # not JSON
        json.dumps([index]).encode(),  # not an object
        json.dumps({"by": f"user{index}"}).encode(),  # no alert_id
        json.dumps({"alert_id": f"pump-1-{index}-1", "by": "ana", "request_id": index}).encode(),  # not open
    ]
    return kinds[index % len(kinds)]


@pytest.mark.parametrize("payload", [NESTED_LIST, NESTED_OBJECT, b'{"alert_id": "\xff", "by": "x"}', b"1" * 4096])
def test_any_payload_is_a_refusal_never_another_exception(payload: bytes) -> None:
    with pytest.raises(CommandError):
        parse_ack(payload, ORIGIN)
    assert request_id_of(payload) is None


class Listener:
    """The replies to our commands, and the alert events."""

    def __init__(self, broker: Mosquitto, prefix: str) -> None:
        self.replies: list[dict[str, Any]] = []
        self.events: list[dict[str, Any]] = []
        self.client = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=unique_name("flood"))
        self.client.on_message = self._on_message
        self.client.connect(broker.host, broker.port)
        self.client.subscribe(f"{prefix}/+/+/+/pump-1/alerts/#", 1)
        self.client.loop_start()

    def _on_message(self, _c: mqtt.Client, _u: object, message: mqtt.MQTTMessage) -> None:
        if message.topic.endswith("/alerts/ack/reply"):
            self.replies.append(json.loads(message.payload))
        elif message.topic.endswith("/alerts"):
            self.events.append(json.loads(message.payload))

    def close(self) -> None:
        self.client.loop_stop()
        self.client.disconnect()


@pytest.fixture
async def sim() -> AsyncIterator[Simulation]:
    async with Simulation(seed=21, update_interval=0.05, machines=["pump-1"], opcua_port=None) as simulation:
        yield simulation


def open_alert_on_disk(data_dir: Path) -> str:
    """An alert left open by a previous run, as the alert engine saves it; its id."""
    config = AlertsConfig.model_validate({"data_dir": str(data_dir), "learn_after": "1h"})
    state = AlertState("pump-1", AlertSink(config, lambda o, e: None).policy)
    for i in range(config.k):  # k windows far over the threshold: raised
        state.observe(1000.0 + 30 * i, 1060.0 + 30 * i, 3.0)
    assert state.active
    (data_dir / "pump-1").mkdir(parents=True)
    (data_dir / "pump-1" / "alerts.json").write_text(json.dumps(state.to_dict()))
    return str(state.alert_id)


def agent_config(sim: Simulation, broker: Mosquitto, prefix: str, tmp_path: Path) -> AgentConfig:
    tags = [
        {"name": name, "table": "input", "address": 2 * i, "type": "float32", "unit": unit}
        for i, (name, unit) in enumerate(sim.signals("pump-1"))
    ]
    machine = {
        "type": "modbus",
        "id": "pump-1",
        "host": "127.0.0.1",
        "port": sim.modbus.port,
        "unit_id": sim.modbus.unit_id("pump-1"),
        "interval": "100ms",
        "tags": tags,
    }
    return AgentConfig.model_validate(
        {
            "site": {"name": "s"},
            "machines": [machine],
            "alerts": {"data_dir": str(tmp_path / "models"), "learn_after": "1h"},
            "mqtt": {"host": "127.0.0.1", "port": broker.port, "topic_prefix": prefix},
            "outbox": {"path": str(tmp_path / "outbox.sqlite")},
        }
    )


async def test_nested_and_junk_commands_are_refused_and_a_valid_ack_still_works(
    sim: Simulation, mosquitto: Mosquitto, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO)
    alert_id = open_alert_on_disk(tmp_path / "models")
    prefix = unique_name("flood")
    agent = Agent(agent_config(sim, mosquitto, prefix, tmp_path))
    ack_topic = agent.pollers[0].origin.topic(prefix, "alerts") + "/ack"
    listener = Listener(mosquitto, prefix)
    stop = asyncio.Event()
    task = asyncio.create_task(agent.run(stop), name="agent-under-test")
    try:
        await wait_until(lambda: agent.publisher is not None and agent.publisher.connected, 15, "agent connected")
        await wait_until(listener.client.is_connected, 15, "listener connected")
        sent = [NESTED_LIST, NESTED_OBJECT] + [junk(i) for i in range(JUNK_COMMANDS)]
        for payload in sent:
            listener.client.publish(ack_topic, payload, qos=1)
        await wait_until(
            lambda: len(listener.replies) == len(sent),
            60,
            "a reply to every bad command",
            detail=lambda: (len(listener.replies), agent.ack_commands),
        )
        assert not any(r["ok"] for r in listener.replies)
        assert sum("nested too deeply" in r["error"] for r in listener.replies) == 2
        assert sum(r["request_id"] is not None for r in listener.replies) == JUNK_COMMANDS // 5

        listener.client.publish(ack_topic, json.dumps({"alert_id": alert_id, "by": "ana"}).encode(), qos=1)
        await wait_until(lambda: len(listener.replies) == len(sent) + 1, 15, "the reply to the valid acknowledge")
        assert listener.replies[-1]["ok"] is True
        await wait_until(
            lambda: any(e["event"] == "acknowledged" and e["alert_id"] == alert_id for e in listener.events),
            15,
            "the acknowledged event",
        )
        assert agent.ack_commands == len(sent) + 1
        assert not task.done(), "the agent survived every bad command"
    finally:
        stop.set()
        await asyncio.wait_for(task, 10)
        listener.close()
    gc.collect()  # an unretrieved task exception is reported when the task is collected
    assert not [r for r in caplog.records if "never retrieved" in r.getMessage()]
    refusals = [r for r in caplog.records if "acknowledge command" in r.getMessage() and r.levelno >= logging.WARNING]
    assert 1 <= len(refusals) <= 10, [r.getMessage() for r in refusals]
    assert len([r for r in caplog.records if r.levelno >= logging.WARNING]) <= 20, "the log stays readable"
