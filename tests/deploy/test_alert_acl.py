"""The example broker ACL (deploy/mosquitto/acl.example) limits who can acknowledge alerts.

A real Mosquitto runs with the example file as it is shipped: the agent's publisher (user
``edge-agent``) subscribes to a machine's ack topic; a dashboard user's command never reaches it,
the maintenance user's does, and the agent may publish the alert events people read.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Iterator
from pathlib import Path

import paho.mqtt.client as mqtt
import pytest
from paho.mqtt.enums import CallbackAPIVersion

from edge_agent.core.origin import Origin
from edge_agent.delivery.config import MqttConfig, OutboxConfig
from edge_agent.delivery.publisher import MqttPublisher
from tests.helpers.servers import Mosquitto, unique_name
from tests.helpers.waiting import wait_until

ACL = Path(__file__).resolve().parents[2] / "deploy" / "mosquitto" / "acl.example"
USERS = {"edge-agent": "a-secret", "maintenance": "m-secret", "dashboard": "d-secret", "ingest": "i-secret"}
ORIGIN = Origin("fieldlab", "a", "l", "pump-1")  # the agent account's site in acl.example


@pytest.fixture
def broker(tmp_path: Path) -> Iterator[Mosquitto]:
    server = Mosquitto(tmp_path / "mosquitto", users=USERS, extra_config=f"acl_file {ACL}")
    with server:
        yield server


def client(broker: Mosquitto, user: str) -> mqtt.Client:
    c = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=unique_name(user))
    c.username_pw_set(user, USERS[user])
    c.connect(broker.host, broker.port)
    c.loop_start()
    return c


async def test_only_the_maintenance_user_can_acknowledge(broker: Mosquitto, tmp_path: Path) -> None:
    config = MqttConfig(host=broker.host, port=broker.port, username="edge-agent", password=USERS["edge-agent"])
    outbox = OutboxConfig(path=str(tmp_path / "o.db"))
    pub = MqttPublisher(config, ORIGIN.site, client_id=unique_name("agent"), outbox=outbox)
    commands: list[bytes] = []
    ack_topic = ORIGIN.topic("edge", "alerts/ack")
    pub.subscribe(ack_topic, lambda _topic, payload: commands.append(payload))
    events: list[bytes] = []
    reader = client(broker, "ingest")
    reader.on_message = lambda _c, _u, m: events.append(bytes(m.payload))
    reader.subscribe(ORIGIN.topic("edge", "alerts"), qos=1)
    await pub.start()
    dashboard = client(broker, "dashboard")
    maintenance = client(broker, "maintenance")
    try:
        await wait_until(lambda: pub.connected, 15, "agent connected with its user")
        await wait_until(lambda: maintenance.is_connected() and dashboard.is_connected(), 10, "users connected")

        def ack(by: str) -> bytes:
            return json.dumps({"alert_id": "x", "by": by}).encode()

        # Until the first command arrives the agent's subscription may not be in place yet: resend.
        await wait_until(lambda: bool(commands) or maintenance.publish(ack_topic, ack("ana"), qos=1) is None, 15,
                         "the maintenance user's command reaches the agent", interval=0.5)  # fmt: skip
        info = dashboard.publish(ack_topic, ack("intruder"), qos=1)
        await asyncio.to_thread(info.wait_for_publish, 10)  # the broker answered (and dropped it)
        maintenance.publish(ack_topic, ack("bo"), qos=1)
        await wait_until(lambda: any(json.loads(c)["by"] == "bo" for c in commands), 15, "the second command")
        assert {json.loads(c)["by"] for c in commands} == {"ana", "bo"}, "the dashboard user cannot acknowledge"

        await pub.submit_message(ORIGIN, "alerts", b'{"event": "raised"}', retain=True)
        await wait_until(lambda: len(events) >= 1, 15, "the agent may publish alert events; ingest reads them")
    finally:
        for c in (dashboard, maintenance, reader):
            c.loop_stop()
            c.disconnect()
        await pub.close()
