"""The shipped broker config with its accounts and ACL on: a real Mosquitto, as compose starts it.

deploy/mosquitto/mosquitto.conf (paths moved to a temporary folder, listener on loopback), its
password file built by deploy/mosquitto/accounts.sh from secret files, and acl.example. The
broker refuses an anonymous client; the agent's account publishes its own site's telemetry but
not another site's; the bridge's account reads telemetry but cannot publish it. A denied publish
is dropped silently by Mosquitto, so every check looks at what a subscriber actually receives,
with a marker message that is allowed sent afterwards (same client, same QoS 1 order).
"""

from __future__ import annotations

import os
import pwd
import re
import shutil
import subprocess
import threading
from collections.abc import Iterator
from pathlib import Path

import paho.mqtt.client as mqtt
import pytest
from paho.mqtt.enums import CallbackAPIVersion
from paho.mqtt.reasoncodes import ReasonCode

from tests.helpers.servers import Mosquitto, unique_name

DEPLOY = Path(__file__).resolve().parents[2] / "deploy"
CONF = DEPLOY / "mosquitto" / "mosquitto.conf"
ACL = DEPLOY / "mosquitto" / "acl.example"
ACCOUNTS = DEPLOY / "mosquitto" / "accounts.sh"
PASSWORDS = {"edge-agent": "agent-secret-1", "ingest": "ingest-secret-1", "maintenance": "maint-secret-1"}
OWN = "edge/fieldlab/hall-1/line-1/pump-1/telemetry"  # the agent's site in acl.example
FOREIGN = "edge/othersite/hall-1/line-1/pump-1/telemetry"

pytestmark = pytest.mark.skipif(
    shutil.which("mosquitto") is None or shutil.which("mosquitto_passwd") is None, reason="mosquitto is not installed"
)


class ShippedMosquitto(Mosquitto):
    """Mosquitto run with deploy/mosquitto/mosquitto.conf itself, only its paths and listener moved."""

    def _command(self) -> list[str]:
        text = CONF.read_text()
        replacements = {
            r"^listener 1883$": f"listener {self.port} 127.0.0.1",
            r"^persistence_location .*$": f"persistence_location {self.directory}/",
            r"^password_file .*$": f"password_file {self.directory / 'passwd'}",
            r"^acl_file .*$": f"acl_file {ACL}",
        }
        for pattern, line in replacements.items():
            text, count = re.subn(pattern, line, text, flags=re.M)
            assert count == 1, f"mosquitto.conf has no single line matching {pattern}"
        if os.geteuid() == 0:
            text += f"\nuser {pwd.getpwuid(0).pw_name}\n"  # as root Mosquitto would switch to user mosquitto
        self.config_path.write_text(text)
        return [self._executable, "-c", str(self.config_path)]


@pytest.fixture
def broker(tmp_path: Path) -> Iterator[Mosquitto]:
    secrets = tmp_path / "secrets"
    secrets.mkdir()
    for user, password in PASSWORDS.items():
        (secrets / f"mqtt-{user}").write_text(password + "\n")
    server = ShippedMosquitto(tmp_path / "broker", users=PASSWORDS)  # users: readiness accepts "not authorized"
    server.directory.mkdir(parents=True, exist_ok=True)
    env = {**os.environ, "SECRETS_DIR": str(secrets), "PASSWORD_FILE": str(server.directory / "passwd")}
    built = subprocess.run([str(ACCOUNTS), "true"], env=env, capture_output=True, text=True, timeout=30, check=False)
    assert built.returncode == 0, built.stderr
    assert "3 broker accounts" in built.stdout
    with server:
        yield server


def connect(broker: Mosquitto, user: str | None, password: str | None = None) -> tuple[mqtt.Client, ReasonCode]:
    """A connected client (loop running) and the broker's CONNACK reason code."""
    client = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=unique_name(user or "anonymous"))
    if user is not None:
        client.username_pw_set(user, PASSWORDS[user] if password is None else password)
    answered = threading.Event()
    codes: list[ReasonCode] = []

    def on_connect(_c: mqtt.Client, _u: object, _f: object, code: ReasonCode, _p: object) -> None:
        codes.append(code)
        answered.set()

    client.on_connect = on_connect
    client.connect(broker.host, broker.port, keepalive=10)
    client.loop_start()
    assert answered.wait(15), "the broker answered CONNECT"
    return client, codes[0]


def subscriber(broker: Mosquitto, user: str, topic: str) -> tuple[mqtt.Client, list[tuple[str, bytes]]]:
    client, code = connect(broker, user)
    assert not code.is_failure, f"{user}: {code}"
    received: list[tuple[str, bytes]] = []
    subscribed = threading.Event()
    client.on_message = lambda _c, _u, m: received.append((m.topic, bytes(m.payload)))
    client.on_subscribe = lambda *_: subscribed.set()
    client.subscribe(topic, qos=1)
    assert subscribed.wait(15)
    return client, received


def wait_for(received: list[tuple[str, bytes]], payload: bytes) -> None:
    arrived = threading.Event()
    for _ in range(150):  # up to 15 s, on the condition, not a fixed sleep
        if any(p == payload for _, p in received):
            return
        arrived.wait(0.1)
    pytest.fail(f"{payload!r} never arrived; received {received}")


def test_anonymous_and_wrong_password_are_refused(broker: Mosquitto) -> None:
    for user, password in ((None, None), ("edge-agent", "wrong")):
        client, code = connect(broker, user, password)
        try:
            assert code.is_failure, f"{user or 'anonymous'} was let in"
        finally:
            client.loop_stop()
            client.disconnect()


def test_agent_publishes_its_own_site_only(broker: Mosquitto) -> None:
    reader, received = subscriber(broker, "ingest", "edge/+/+/+/+/telemetry")
    agent, code = connect(broker, "edge-agent")
    try:
        assert not code.is_failure
        agent.publish(FOREIGN, b"another site", qos=1).wait_for_publish(15)  # dropped by the ACL
        agent.publish(OWN, b"own site", qos=1).wait_for_publish(15)
        wait_for(received, b"own site")
        assert received == [(OWN, b"own site")], "the agent cannot write another site's telemetry"
    finally:
        for client in (reader, agent):
            client.loop_stop()
            client.disconnect()


def test_bridge_reads_telemetry_but_cannot_publish_it(broker: Mosquitto) -> None:
    watcher, received = subscriber(broker, "ingest", "edge/+/+/+/+/telemetry")
    bridge, _ = connect(broker, "ingest")
    agent, _ = connect(broker, "edge-agent")
    try:
        bridge.publish(OWN, b"forged by the bridge", qos=1).wait_for_publish(15)
        agent.publish(OWN, b"from the agent", qos=1).wait_for_publish(15)
        wait_for(received, b"from the agent")  # the bridge's account reads telemetry
        assert [p for _, p in received] == [b"from the agent"], "the bridge cannot publish telemetry"
    finally:
        for client in (watcher, bridge, agent):
            client.loop_stop()
            client.disconnect()


def test_accounts_script_refuses_to_run_without_accounts(tmp_path: Path) -> None:
    env = {**os.environ, "SECRETS_DIR": str(tmp_path), "PASSWORD_FILE": str(tmp_path / "passwd")}
    result = subprocess.run([str(ACCOUNTS), "true"], env=env, capture_output=True, text=True, timeout=30, check=False)
    assert result.returncode == 78
    assert "no broker accounts" in result.stderr
    assert not (tmp_path / "passwd").exists()
