"""The MQTT publisher through the outbox, against a real Mosquitto that a test stops and starts.

A plain paho subscriber with a persistent session counts what reaches the broker. Outages here are
short (a few seconds): the behaviour does not depend on their length, only the backlog's size does.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator
from pathlib import Path

import paho.mqtt.client as mqtt
import pytest
from paho.mqtt.enums import CallbackAPIVersion

from edge_agent.core.origin import Origin
from edge_agent.delivery.config import MqttConfig, OutboxConfig
from edge_agent.delivery.publisher import MqttPublisher
from tests.helpers.mqtt import Subscriber
from tests.helpers.publisher import running_publisher
from tests.helpers.servers import Mosquitto, tcp_accepts, unique_name
from tests.helpers.telemetry import T0, batch
from tests.helpers.waiting import wait_until


@pytest.fixture
async def publisher(fresh_mosquitto: Mosquitto, prefix: str, tmp_path: Path) -> AsyncIterator[MqttPublisher]:
    async with running_publisher(fresh_mosquitto, prefix, tmp_path / "o.sqlite", max_in_flight=50) as pub:
        yield pub


ORIGIN = Origin("s", "a", "l", "m1")


async def test_batches_published_while_the_broker_is_down_arrive_in_order(
    fresh_mosquitto: Mosquitto, subscriber: Subscriber, publisher: MqttPublisher
) -> None:
    await wait_until(lambda: publisher.connected, 15, "first connect")
    for i in range(20):
        await publisher.submit(batch(i), ORIGIN)
    await wait_until(lambda: subscriber.messages >= 20, 15, "first 20 messages")
    await asyncio.to_thread(fresh_mosquitto.stop)
    await wait_until(lambda: not publisher.connected, 15, "publisher sees the broker gone")
    for i in range(20, 2020):
        await publisher.submit(batch(i), ORIGIN)
    assert publisher.outbox.stats.entries >= 2000 - publisher.max_in_flight
    await asyncio.to_thread(fresh_mosquitto.start)
    await wait_until(
        lambda: len(subscriber.samples) == 2020 and publisher.outbox.stats.entries == 0,
        60,
        "backlog drained",
        detail=lambda: (len(subscriber.samples), publisher.outbox.stats),
    )
    assert sorted(set(subscriber.order)) == [T0 + i for i in range(2020)]
    first_seen: list[int] = []
    for t in subscriber.order:
        if not first_seen or t > first_seen[-1]:
            first_seen.append(t)
    assert first_seen == [T0 + i for i in range(2020)], "first deliveries in order (re-sends may repeat)"
    await wait_until(
        lambda: subscriber.status is not None and subscriber.status.get("backlog", {}).get("batches") == 0,
        15,
        "status says the backlog is empty",
    )
    assert publisher.outbox.stats.dropped_batches == 0


async def test_outbox_left_by_a_previous_run_is_sent_first(
    fresh_mosquitto: Mosquitto, subscriber: Subscriber, prefix: str, tmp_path: Path
) -> None:
    path = tmp_path / "left.sqlite"
    down = MqttConfig(host="127.0.0.1", port=1, topic_prefix=prefix)  # nothing listens on port 1
    first = MqttPublisher(down, "s", client_id="agent-x", outbox=OutboxConfig(path=str(path)))
    await first.start()
    for i in range(100):
        await first.submit(batch(i), ORIGIN)
    await first.close()
    config = MqttConfig(host=fresh_mosquitto.host, port=fresh_mosquitto.port, topic_prefix=prefix)
    second = MqttPublisher(config, "s", client_id="agent-x", outbox=OutboxConfig(path=str(path)))
    await second.start()
    try:
        await second.submit(batch(100), ORIGIN)
        await wait_until(lambda: len(subscriber.samples) == 101, 20, "old and new batches")
        assert subscriber.order[:101] == [T0 + i for i in range(101)]
    finally:
        await second.close()


class AuthMosquitto(Mosquitto):
    """Mosquitto that refuses anonymous clients; ready once it accepts TCP (the probe is anonymous)."""

    def _command(self) -> list[str]:
        command = super()._command()
        self.config_path.write_text(
            self.config_path.read_text().replace("allow_anonymous true", "allow_anonymous false")
        )
        return command

    def _is_ready(self) -> bool:
        return tcp_accepts(self.port)


async def test_refused_login_is_reported_once_without_the_password(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO)
    passwords = tmp_path / "passwd"
    passwords.write_text("")
    proc = await asyncio.create_subprocess_exec("mosquitto_passwd", "-b", str(passwords), "agent", "right-secret")
    assert await proc.wait() == 0
    passwords.chmod(0o600)
    with AuthMosquitto(tmp_path / "auth", extra_config=f"password_file {passwords}") as broker:
        config = MqttConfig(host=broker.host, port=broker.port, username="agent", password="wrong-secret")
        pub = MqttPublisher(config, "s", client_id=unique_name("agent"), outbox=OutboxConfig(path=str(tmp_path / "o")))
        pub.backoff.initial, pub.backoff.cap = 0.1, 0.2
        await pub.start()
        try:
            await wait_until(
                lambda: broker.log_path.read_text().count("not authorised") >= 3, 20, "several refused attempts"
            )
            assert pub.stats.connects == 0
        finally:
            await pub.close()
    warnings = [r.getMessage() for r in caplog.records if r.levelno >= logging.WARNING]
    refused = [m for m in warnings if "refused the login of user 'agent'" in m]
    assert len(refused) == 1, warnings
    assert "mqtt.password" in refused[0]
    assert all("wrong-secret" not in r.getMessage() for r in caplog.records)


async def test_other_messages_go_through_the_outbox_in_order(
    fresh_mosquitto: Mosquitto, publisher: MqttPublisher, prefix: str
) -> None:
    received: list[tuple[str, bytes | bytearray]] = []
    subscribed: list[int] = []
    client = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=unique_name("alerts"))
    client.on_subscribe = lambda _c, _u, mid, *_: subscribed.append(mid)
    client.on_message = lambda _c, _u, m: received.append((m.topic, m.payload))
    client.on_connect = lambda c, *_: c.subscribe(f"{prefix}/+/+/+/+/+", qos=1)
    client.connect(fresh_mosquitto.host, fresh_mosquitto.port)
    client.loop_start()
    try:
        await wait_until(lambda: publisher.connected and bool(subscribed), 15, "connect and SUBACK")
        await publisher.submit(batch(1), ORIGIN)
        await publisher.submit_message(ORIGIN, "alerts", b'{"alert": "raised"}')
        await publisher.submit(batch(2), ORIGIN)
        await wait_until(lambda: len([t for t, _ in received if not t.endswith("/status")]) == 3, 15, "3 messages")
    finally:
        client.loop_stop()
        client.disconnect()
    kinds = [t.rsplit("/", 1)[1] for t, _ in received if not t.endswith("/status")]
    assert kinds == ["telemetry", "alerts", "telemetry"]
    assert (f"{prefix}/s/a/l/m1/alerts", b'{"alert": "raised"}') in received
