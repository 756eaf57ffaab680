"""The broker ACL of the compose stack: mounted where mosquitto.conf looks, and it does what it says.

Who may acknowledge alerts is the point of deploy/mosquitto/acl.example: the maintenance user may
publish on .../alerts/ack, a dashboard may not (Mosquitto drops a denied publish silently, so the
test checks what the agent's user actually receives), and the agent may read its commands.
"""

from __future__ import annotations

import re
import shutil
import threading
from pathlib import Path
from typing import Any

import paho.mqtt.client as mqtt
import pytest
import yaml
from paho.mqtt.enums import CallbackAPIVersion

from tests.helpers.servers import Mosquitto, unique_name

DEPLOY = Path(__file__).resolve().parents[2] / "deploy"
ACL = DEPLOY / "mosquitto" / "acl.example"
ACK = "edge/fieldlab/hall-1/line-2/pump-1/alerts/ack"  # the agent's site in acl.example
USERS = {"edge-agent": "agent-secret", "maintenance": "maint-secret", "dashboard": "dash-secret"}


def test_compose_mounts_the_acl_where_mosquitto_conf_names_it() -> None:
    compose: dict[str, Any] = yaml.safe_load((DEPLOY / "compose.yaml").read_text())
    mounts = dict(v.split(":")[:2][::-1] for v in compose["services"]["mosquitto"]["volumes"] if v.startswith("./"))
    conf = (DEPLOY / "mosquitto" / "mosquitto.conf").read_text()
    named = re.search(r"^acl_file (\S+)$", conf, re.M)
    assert named is not None, "mosquitto.conf turns the ACL on (acl_file, not commented out)"
    assert mounts.get(named[1]) == "./mosquitto/acl.example"
    assert (DEPLOY / mounts[named[1]]).is_file()


def client(broker: Mosquitto, user: str) -> mqtt.Client:
    c = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=unique_name(user))
    c.username_pw_set(user, USERS[user])
    c.connect(broker.host, broker.port, keepalive=10)
    c.loop_start()
    return c


@pytest.mark.skipif(shutil.which("mosquitto") is None, reason="mosquitto is not installed")
def test_only_maintenance_can_acknowledge_alerts(tmp_path: Path) -> None:
    with Mosquitto(tmp_path / "broker", users=USERS, extra_config=f"acl_file {ACL}") as broker:
        received: list[bytes] = []
        arrived = threading.Event()
        subscribed = threading.Event()
        agent = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=unique_name("agent"))
        agent.username_pw_set("edge-agent", USERS["edge-agent"])
        agent.on_subscribe = lambda *_: subscribed.set()

        def on_message(_c: mqtt.Client, _u: object, message: mqtt.MQTTMessage) -> None:
            received.append(bytes(message.payload))
            arrived.set()

        agent.on_message = on_message
        agent.on_connect = lambda c, *_: c.subscribe("edge/+/+/+/+/alerts/ack", qos=1)
        agent.connect(broker.host, broker.port, keepalive=10)
        agent.loop_start()
        dashboard, maintenance = client(broker, "dashboard"), client(broker, "maintenance")
        try:
            assert subscribed.wait(15), "the agent's user may subscribe to its commands"
            denied = dashboard.publish(ACK, b"from the dashboard", qos=1)
            denied.wait_for_publish(15)  # the broker has processed it (and dropped it, silently)
            maintenance.publish(ACK, b"from maintenance", qos=1).wait_for_publish(15)
            assert arrived.wait(15), "maintenance's acknowledge reached the agent"
        finally:
            for c in (agent, dashboard, maintenance):
                c.loop_stop()
                c.disconnect()
    assert received == [b"from maintenance"], "a dashboard cannot acknowledge alerts"
