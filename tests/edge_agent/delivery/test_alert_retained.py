"""Alert events are the retained current state of a machine's ``.../alerts`` topic.

The publisher sends them through the outbox (durable, in order) with the retain flag, so a
dashboard that connects later sees the open alert, or the ``cleared`` event that closed the
last one. Real Mosquitto; a fresh subscriber reads what the broker retained.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from edge_agent.core.origin import Origin
from edge_agent.delivery.config import MqttConfig, OutboxConfig
from edge_agent.delivery.publisher import MqttPublisher
from tests.helpers.mqtt import retained
from tests.helpers.servers import Mosquitto, unique_name
from tests.helpers.waiting import wait_until

ORIGIN = Origin("s", "a", "l", "pump-1")


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
