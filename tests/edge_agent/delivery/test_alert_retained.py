"""Alert events are the retained current state of a machine's ``.../alerts`` topic.

The publisher sends them through the outbox (durable, in order) with the retain flag, so a
dashboard that connects later sees the open alert, or the ``cleared`` event that closed the
last one. Real Mosquitto; a fresh subscriber reads what the broker retained.
"""

from __future__ import annotations

import asyncio
import json
import threading
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import paho.mqtt.client as mqtt
import pytest
from paho.mqtt.enums import CallbackAPIVersion

from edge_agent.core.origin import Origin
from edge_agent.delivery.config import MqttConfig, OutboxConfig
from edge_agent.delivery.publisher import MqttPublisher
from tests.helpers.servers import Mosquitto, unique_name
from tests.helpers.waiting import wait_until

ORIGIN = Origin("s", "a", "l", "pump-1")


def retained(broker: Mosquitto, topic: str, timeout: float = 10.0) -> dict[str, Any] | None:
    """The retained message of ``topic`` as a fresh subscriber gets it (None: nothing retained).

    Mosquitto sends retained messages right after the SUBACK; a probe message published on a
    private topic after subscribing marks the end of them, so "nothing retained" is a real answer
    and not a timeout.
    """
    got: list[dict[str, Any]] = []
    done = threading.Event()
    probe = f"{topic}/_probe_{unique_name()}"
    client = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=unique_name("late"))

    def on_message(_c: mqtt.Client, _u: object, message: mqtt.MQTTMessage) -> None:
        if message.topic == probe:
            done.set()
        elif message.retain:
            got.append(json.loads(message.payload))

    def on_subscribe(c: mqtt.Client, *_: object) -> None:
        c.publish(probe, b"{}", qos=1)

    client.on_message = on_message
    client.on_subscribe = on_subscribe
    client.on_connect = lambda c, *_: c.subscribe([(topic, 1), (probe, 1)])
    client.connect(broker.host, broker.port, keepalive=5)
    client.loop_start()
    try:
        if not done.wait(timeout):
            raise AssertionError(f"no answer from the broker on {topic} within {timeout} s")
    finally:
        client.loop_stop()
        client.disconnect()
    return got[-1] if got else None


@pytest.fixture
async def publisher(mosquitto: Mosquitto, tmp_path: Path) -> AsyncIterator[MqttPublisher]:
    config = MqttConfig(host=mosquitto.host, port=mosquitto.port, topic_prefix=unique_name("ret"), keepalive=5)
    pub = MqttPublisher(config, "s", client_id=unique_name("agent"), outbox=OutboxConfig(path=str(tmp_path / "o.db")))
    await pub.start()
    try:
        yield pub
    finally:
        await pub.close()


def event(kind: str, **extra: Any) -> bytes:
    return json.dumps({"schema": 1, "event": kind, "machine": "pump-1", "alert_id": "pump-1-1-100", **extra}).encode()


async def test_a_late_subscriber_sees_the_open_alert_then_the_cleared_state(
    mosquitto: Mosquitto, publisher: MqttPublisher
) -> None:
    topic = ORIGIN.topic(publisher.config.topic_prefix, "alerts")
    await wait_until(lambda: publisher.connected, 15, "publisher connected")
    assert await asyncio.to_thread(retained, mosquitto, topic) is None, "nothing retained before any alert"

    await publisher.submit_message(ORIGIN, "alerts", event("raised", active=True), retain=True)
    await publisher.submit_message(ORIGIN, "scores", b'{"score": 1}')  # not retained, interleaved
    await publisher.submit_message(ORIGIN, "alerts", event("acknowledged", active=True, by="ana"), retain=True)
    await wait_until(lambda: publisher.outbox.stats.entries == 0, 15, "outbox drained")
    late = await asyncio.to_thread(retained, mosquitto, topic)
    assert late is not None
    assert (late["event"], late["active"]) == ("acknowledged", True), "the newest event is the current state"
    scores = ORIGIN.topic(publisher.config.topic_prefix, "scores")
    assert await asyncio.to_thread(retained, mosquitto, scores) is None, "scores are never retained"

    await publisher.submit_message(ORIGIN, "alerts", event("cleared", active=False), retain=True)
    await wait_until(lambda: publisher.outbox.stats.entries == 0, 15, "outbox drained")
    late = await asyncio.to_thread(retained, mosquitto, topic)
    assert late is not None
    assert (late["event"], late["active"]) == ("cleared", False)


async def test_retained_alert_events_written_while_the_broker_was_away_arrive_in_order(
    fresh_mosquitto: Mosquitto, tmp_path: Path
) -> None:
    prefix = unique_name("ret")
    config = MqttConfig(host=fresh_mosquitto.host, port=fresh_mosquitto.port, topic_prefix=prefix, keepalive=5)
    pub = MqttPublisher(config, "s", client_id=unique_name("agent"), outbox=OutboxConfig(path=str(tmp_path / "o.db")))
    pub.backoff.initial, pub.backoff.cap = 0.1, 0.5
    await asyncio.to_thread(fresh_mosquitto.stop)
    await pub.start()
    try:
        await pub.submit_message(ORIGIN, "alerts", event("raised", active=True), retain=True)
        await pub.submit_message(ORIGIN, "alerts", event("escalated", active=True), retain=True)
        await pub.submit_message(ORIGIN, "alerts", event("cleared", active=False), retain=True)
        await pub.submit_message(ORIGIN, "alerts", event("raised", active=True, alert_id="pump-1-2-200"), retain=True)
        assert pub.outbox.stats.entries == 4
        await asyncio.to_thread(fresh_mosquitto.start)
        await wait_until(lambda: pub.outbox.stats.entries == 0, 30, "backlog sent")
    finally:
        await pub.close()
    late = await asyncio.to_thread(retained, fresh_mosquitto, ORIGIN.topic(prefix, "alerts"))
    assert late is not None
    assert (late["event"], late["alert_id"]) == ("raised", "pump-1-2-200")
