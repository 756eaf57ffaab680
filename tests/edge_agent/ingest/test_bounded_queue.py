"""The bridge's queue is bounded: with InfluxDB down and a QoS 0 publisher, messages are shed and counted.

Real Mosquitto → IngestBridge → a real InfluxDB 1.x that is stopped while a QoS 0 publisher sends.
QoS 0 messages have no receive window, so before the bound the bridge kept every one in memory
for as long as InfluxDB was down. Checked: the queue never holds more than
``ingest.max_queued_messages``, the surplus is dropped and counted, dropping is logged once when
it starts and once when the queue has drained (with the number dropped), and once InfluxDB is
back every message that was kept is written, exactly.
"""

from __future__ import annotations

import asyncio
import logging
import re

import paho.mqtt.client as mqtt
import pytest
from paho.mqtt.enums import CallbackAPIVersion

from edge_agent.core.origin import Origin
from edge_agent.delivery.config import InfluxConfig
from tests.helpers.ingest_bridge import count_points, good, ingest_config, mqtt_config, running_bridge
from tests.helpers.servers import InfluxDB1, Mosquitto, unique_name
from tests.helpers.waiting import wait_until

WAIT = 60.0
BOUND = 40
MESSAGES = 1500
FAST = {"backoff_initial": 0.1, "backoff_max": 0.5}


def publish_qos0(broker: Mosquitto, topic: str, payloads: list[bytes]) -> None:
    client = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=unique_name("qos0"))
    client.connect(broker.host, broker.port, keepalive=10)
    client.loop_start()
    try:
        for payload in payloads:
            client.publish(topic, payload, qos=0)
        info = client.publish(topic + "-end", b"", qos=1)  # after every QoS 0 one on this connection
        info.wait_for_publish(timeout=WAIT)
    finally:
        client.disconnect()
        client.loop_stop()


async def test_with_influxdb_down_qos0_messages_beyond_the_bound_are_dropped_and_counted(
    fresh_influxdb1: InfluxDB1, mosquitto: Mosquitto, caplog: pytest.LogCaptureFixture
) -> None:
    influx, database, prefix = fresh_influxdb1, unique_name("db"), unique_name("edge")
    influx.create_database(database)
    origin = Origin("s", "a", "l", "m1")
    config = InfluxConfig(version=1, url=influx.url, database=database, timeout=2.0)
    ingest = ingest_config(batch_size=20, max_queued_messages=BOUND)
    caplog.set_level(logging.WARNING, logger="edge_agent.ingest")
    async with running_bridge(mqtt_config(mosquitto, prefix), ingest, config, **FAST) as bridge:
        influx.stop()
        payloads = [good(origin, index) for index in range(MESSAGES)]
        await asyncio.to_thread(publish_qos0, mosquitto, origin.topic(prefix, "telemetry"), payloads)
        await wait_until(
            lambda: bridge.stats.dropped > 0, WAIT, "QoS 0 messages to be dropped", detail=lambda: bridge.stats
        )
        assert bridge.stats.queued_peak <= BOUND
        assert bridge.stats.queue_full
        influx.start()
        await wait_until(
            lambda: (
                not bridge.stats.queue_full
                and bridge.stats.queued == 0
                and bridge.stats.received * 2 == bridge.stats.written_points
            ),
            WAIT,
            "the kept messages to be written",
            detail=lambda: bridge.stats,
        )
    stats = bridge.stats
    assert stats.queued_peak <= BOUND
    assert stats.received + stats.dropped <= MESSAGES
    assert stats.dropped > 0
    assert stats.malformed == 0
    assert await count_points(influx, database) == stats.received * 2  # each kept message: exactly its 2 points
    started = [r for r in caplog.records if "QoS 0 messages are dropped" in r.getMessage()]
    ended = [r for r in caplog.records if "QoS 0 messages were dropped meanwhile" in r.getMessage()]
    assert len(started) == len(ended) >= 1  # one line as each spell of dropping starts, one as it ends
    counts = [re.search(r"; (\d+) QoS 0 messages were dropped", r.getMessage()) for r in ended]
    assert sum(int(match.group(1)) for match in counts if match) == stats.dropped
