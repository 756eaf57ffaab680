"""Acknowledging an alert over MQTT, and the retained alert state a late subscriber sees.

The whole agent runs (Modbus poller, outbox, publisher, alert engine) against a simulated pump
and a real Mosquitto. Wall-clock time: 1 s windows, learned in 20 s (as tests/e2e/test_alerts.py).
Commands go to ``.../pump-1/alerts/ack``; answers come back on ``.../alerts/ack/reply``.
"""

from __future__ import annotations

import asyncio
import json
import re
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import paho.mqtt.client as mqtt
import pytest
from paho.mqtt.enums import CallbackAPIVersion

from edge_agent.alerts.commands import AckRequest, parse_ack
from edge_agent.alerts.config import AlertsConfig
from edge_agent.alerts.sink import AlertSink
from edge_agent.commands.demo import DEMO_ALERTS
from edge_agent.core.errors import CommandError
from edge_agent.core.origin import Origin
from edge_agent.runtime.agent import Agent
from edge_agent.runtime.config import AgentConfig
from models.alerts import AlertState
from simulators import Simulation
from tests.helpers.mqtt import retained
from tests.helpers.servers import Mosquitto, unique_name
from tests.helpers.waiting import wait_until

ORIGIN = Origin("s", "a", "l", "pump-1")
SCORE_KEYS = ("schema", "site", "area", "line", "machine", "at", "score", "threshold", "level", "operating_state",
              "detector", "model_version")  # fmt: skip


@pytest.mark.parametrize(
    ("payload", "says"),
    [
        (b"ack!", "not JSON"),
        (b"[1, 2]", "not an object"),
        (b'{"by": "ana"}', "alert_id is missing"),
        (b'{"alert_id": 7, "by": "ana"}', "alert_id is missing or not a string"),
        (b'{"alert_id": "pump-1-1-5"}', "by (who acknowledges) is missing"),
        (b'{"alert_id": "pump-1-1-5", "by": "  "}', "by (who acknowledges) is missing"),
        (b'{"alert_id": "pump-1-1-5", "by": "a\\nb"}', "printable name"),
        (b'{"alert_id": "pump-1-1-5", "by": "ana", "machine": "press-1"}', "names machine 'press-1'"),
        (b'{"alert_id": "x", "by": "ana", "request_id": [1]}', "request_id must be"),
        (b'{"alert_id": "x", "by": "' + b"a" * 5000 + b'"}', "too large"),
    ],
)
def test_a_bad_command_is_refused_with_what_to_send(payload: bytes, says: str) -> None:
    with pytest.raises(CommandError, match=re.escape(says)):
        parse_ack(payload, ORIGIN)


def test_a_good_command_is_read() -> None:
    got = parse_ack(b'{"alert_id": " pump-1-1-5 ", "by": "Ana", "machine": "pump-1", "request_id": 42}', ORIGIN)
    assert got == AckRequest("pump-1-1-5", "Ana", "42")


class Listener:
    """Everything below the machine's alerts topic: events, our own commands, the replies."""

    def __init__(self, broker: Mosquitto, prefix: str) -> None:
        self.events: list[dict[str, Any]] = []
        self.replies: list[dict[str, Any]] = []
        self.scores: list[dict[str, Any]] = []
        self.client = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=unique_name("listen"))
        self.client.on_message = self._on_message
        self.client.connect(broker.host, broker.port)
        self.client.subscribe([(f"{prefix}/+/+/+/pump-1/alerts/#", 1), (f"{prefix}/+/+/+/pump-1/scores", 1)])
        self.client.loop_start()
        self.ack_topic = ""

    def _on_message(self, _c: mqtt.Client, _u: object, message: mqtt.MQTTMessage) -> None:
        if message.topic.endswith("/alerts"):
            self.events.append(json.loads(message.payload))
            self.ack_topic = message.topic + "/ack"
        elif message.topic.endswith("/alerts/ack/reply"):
            self.replies.append(json.loads(message.payload))
        elif message.topic.endswith("/scores"):
            self.scores.append(json.loads(message.payload))

    def send(self, payload: bytes) -> None:
        self.client.publish(self.ack_topic, payload, qos=1)

    def close(self) -> None:
        self.client.loop_stop()
        self.client.disconnect()


@pytest.fixture
async def sim() -> AsyncIterator[Simulation]:
    async with Simulation(seed=21, update_interval=0.05, machines=["pump-1"], opcua_port=None) as simulation:
        yield simulation


def agent_config(sim: Simulation, broker: Mosquitto, prefix: str, tmp_path: Path) -> AgentConfig:
    alerts = {
        **DEMO_ALERTS,
        "window": "1s",
        "hop": "0.5s",
        "learn_after": "20s",
        "cooldown": "0s",
        "clear_after": 3,
        "data_dir": str(tmp_path / "models"),
    }
    tags = [
        {"name": name, "table": "input", "address": 2 * i, "type": "float32", "unit": unit}
        for i, (name, unit) in enumerate(sim.signals("pump-1"))
    ]
    tags.append({"name": "state_code", "table": "holding", "address": 102, "type": "uint16"})
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
            "alerts": alerts,
            "mqtt": {"host": "127.0.0.1", "port": broker.port, "topic_prefix": prefix},
            "outbox": {"path": str(tmp_path / "outbox.sqlite")},
        }
    )


async def test_acknowledge_over_mqtt_and_the_retained_state(
    sim: Simulation, mosquitto: Mosquitto, tmp_path: Path
) -> None:
    prefix = unique_name("ack")
    config = agent_config(sim, mosquitto, prefix, tmp_path)
    listener = Listener(mosquitto, prefix)
    agent = Agent(config)
    assert agent.alerts is not None
    alerts_topic = agent.pollers[0].origin.topic(prefix, "alerts")
    listener.ack_topic = alerts_topic + "/ack"
    stop = asyncio.Event()
    task = asyncio.create_task(agent.run(stop), name="agent-under-test")
    try:
        await wait_until(lambda: agent.publisher is not None and agent.publisher.connected, 15, "agent connected")
        # Malformed JSON before anything is learned: a reply that says what to send, the agent goes on.
        listener.send(b'{"alert_id": ')
        await wait_until(lambda: len(listener.replies) == 1, 15, "a reply to the malformed command")
        assert listener.replies[0]["ok"] is False
        assert "not JSON" in listener.replies[0]["error"]

        engine = agent.alerts
        await wait_until(lambda: engine.stats("pump-1").learned, 60, "learned", detail=lambda: engine.stats("pump-1"))
        listener.send(b'{"alert_id": "pump-1-1-1", "by": "ana", "request_id": "r1"}')
        await wait_until(lambda: len(listener.replies) == 2, 15, "a reply when no alert is open")
        assert listener.replies[1]["ok"] is False
        assert listener.replies[1]["request_id"] == "r1"
        assert "no open alert" in listener.replies[1]["error"]

        sim.inject_fault("pump-1", "imbalance", severity=1.0, progression="sudden")
        await wait_until(lambda: any(e["event"] == "raised" for e in listener.events), 30, "the alert on MQTT")
        raised = next(e for e in listener.events if e["event"] == "raised")
        late = await asyncio.to_thread(retained, mosquitto, alerts_topic)
        assert late is not None
        assert late["alert_id"] == raised["alert_id"]
        assert late["active"] is True, "a dashboard connecting now sees the open alert"

        listener.send(json.dumps({"alert_id": "pump-1-99-1", "by": "ana"}).encode())
        await wait_until(lambda: len(listener.replies) == 3, 15, "a reply to an unknown alert id")
        assert listener.replies[2]["ok"] is False
        assert raised["alert_id"] in listener.replies[2]["error"], "the refusal names the open alert"
        assert not any(e["event"] == "acknowledged" for e in listener.events)

        listener.send(json.dumps({"alert_id": raised["alert_id"], "by": "ana", "request_id": 7}).encode())
        await wait_until(lambda: any(e["event"] == "acknowledged" for e in listener.events), 15, "acknowledged event")
        await wait_until(lambda: len(listener.replies) == 4, 15, "the reply to the acknowledge")
        assert listener.replies[3] | {"at": None} == {
            "schema": 1,
            "ok": True,
            "machine": "pump-1",
            "alert_id": raised["alert_id"],
            "by": "ana",
            "request_id": "7",
            "error": None,
            "at": None,
        }
        acked = next(e for e in listener.events if e["event"] == "acknowledged")
        assert (acked["alert_id"], acked["acknowledged"], acked["acknowledged_by"]) == (raised["alert_id"], True, "ana")
        assert [a["acknowledged_by"] for a in agent.alert_board.active()] == ["ana"], "the status page shows it too"

        listener.send(json.dumps({"alert_id": raised["alert_id"], "by": "bo"}).encode())
        await wait_until(lambda: len(listener.replies) == 5, 15, "a reply to a second acknowledge")
        assert "already acknowledged by 'ana'" in listener.replies[4]["error"]

        sim.clear_fault("pump-1")
        await wait_until(lambda: any(e["event"] == "cleared" for e in listener.events), 60, "the alert cleared")
        await wait_until(lambda: agent.publisher is not None and agent.publisher.outbox.stats.entries == 0, 15, "sent")
        late = await asyncio.to_thread(retained, mosquitto, alerts_topic)
        assert late is not None
        assert (late["event"], late["active"], late["alert_id"]) == ("cleared", False, raised["alert_id"])
        assert agent.ack_commands == 5

        # One score per scored window, the documented shape, never retained.
        await wait_until(lambda: len(listener.scores) == engine.stats("pump-1").scored, 15, "every score sent",
                         detail=lambda: (len(listener.scores), engine.stats("pump-1")))  # fmt: skip
        assert {tuple(sorted(s)) for s in listener.scores} == {tuple(sorted(SCORE_KEYS))}
        first = listener.scores[0]
        assert (first["schema"], first["machine"], first["detector"]) == (1, "pump-1", raised["detector"])
        assert first["model_version"] == raised["model_version"]
        assert first["operating_state"] == "running"
        assert first["at"].endswith("Z")
        assert all(isinstance(s[k], float) for s in listener.scores for k in ("score", "threshold", "level"))
        assert all((s["score"] >= s["threshold"]) == (s["level"] >= 1) for s in listener.scores)
        assert max(s["level"] for s in listener.scores) >= 1, "the fault shows in the scores"
        assert len({s["at"] for s in listener.scores}) == len(listener.scores), "each window its own time"
        assert await asyncio.to_thread(retained, mosquitto, alerts_topic.replace("/alerts", "/scores")) is None
        assert not task.done(), "the agent survived every bad command"
    finally:
        stop.set()
        await asyncio.wait_for(task, 10)
        listener.close()
    assert sim.write_count == 0


async def test_an_alert_open_before_a_restart_can_be_acknowledged_before_the_first_poll(tmp_path: Path) -> None:
    config = AlertsConfig.model_validate({"data_dir": str(tmp_path), "learn_after": "1h"})
    sink = AlertSink(config, lambda o, e: None)
    state = AlertState("pump-1", sink.policy)
    for i in range(config.k):  # k windows far over the threshold: raised
        state.observe(1000.0 + 30 * i, 1060.0 + 30 * i, 3.0)
    assert state.active
    (tmp_path / "pump-1").mkdir()
    (tmp_path / "pump-1" / "alerts.json").write_text(json.dumps(state.to_dict()))

    events: list[dict[str, Any]] = []
    restarted = AlertSink(config, lambda o, e: events.append(e))
    await restarted.start()
    restarted.add_machine(ORIGIN)
    try:
        assert await restarted.acknowledge_alert("pump-1", "pump-1-9-9", "ana") == (
            f"alert 'pump-1-9-9' is not open on 'pump-1' (the open one is {state.alert_id!r})"
        )
        assert await restarted.acknowledge_alert("pump-1", str(state.alert_id), "ana") is None
    finally:
        await restarted.close()
    assert [(e["event"], e["alert_id"], e["acknowledged_by"]) for e in events] == [
        ("acknowledged", state.alert_id, "ana")
    ]
    saved = json.loads((tmp_path / "pump-1" / "alerts.json").read_text())
    assert saved["acknowledged_by"] == "ana", "the acknowledgement survives the next restart"
