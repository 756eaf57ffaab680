"""Nothing lost across outages: InfluxDB down, the bridge stopped meanwhile, the broker restarted.

Each test owns its servers (``fresh_*`` fixtures) because it stops them. Backoff is shortened
through the bridge's constructor so the tests wait seconds, not minutes.
"""

from __future__ import annotations

import asyncio
import logging
import time

import pytest

from edge_agent.core.origin import Origin
from edge_agent.core.samples import Batch, Sample
from edge_agent.delivery.config import InfluxConfig
from edge_agent.delivery.influx_writer import make_writer
from edge_agent.delivery.payloads import encode_json
from edge_agent.ingest.bridge import IngestBridge
from tests.helpers.ingest_bridge import (
    WAIT,
    Publisher,
    count_points,
    ingest_config,
    mqtt_config,
    running_bridge,
)
from tests.helpers.servers import InfluxDB1, Mosquitto, unique_name
from tests.helpers.waiting import wait_until

T0 = 1_763_800_000_000_000_000
FAST = {"backoff_initial": 0.1, "backoff_max": 0.5}


def message(origin: Origin, index: int) -> bytes:
    """Three samples per message; every point has its own timestamp."""
    t = T0 + index * 1_000_000
    return encode_json(
        Batch(
            origin.machine,
            (Sample("a", float(index), t), Sample("b", index, t + 1), Sample("c", index % 2 == 0, t + 2)),
        ),
        origin,
    )


async def test_influxdb_down_while_messages_arrive_then_every_point_arrives(
    fresh_influxdb1: InfluxDB1, fresh_mosquitto: Mosquitto
) -> None:
    influx, database, prefix = fresh_influxdb1, unique_name("db"), unique_name("edge")
    influx.create_database(database)
    origin = Origin("s", "a", "l", "m1")
    publisher = Publisher(fresh_mosquitto)
    config = InfluxConfig(version=1, url=influx.url, database=database, timeout=2.0)
    try:
        async with running_bridge(mqtt_config(fresh_mosquitto, prefix), ingest_config(), config, **FAST) as bridge:
            await publisher.apublish(origin.topic(prefix, "telemetry"), message(origin, 0))
            await wait_until(lambda: bridge.stats.acked == 1, WAIT, "the first message to be acked")

            await asyncio.to_thread(influx.stop)
            down_since = time.monotonic()
            for index in range(1, 21):
                await publisher.apublish(origin.topic(prefix, "telemetry"), message(origin, index))
                await asyncio.sleep(0.1)  # messages keep arriving through the outage
            await wait_until(lambda: bridge.stats.write_errors >= 3, WAIT, "the bridge to retry the failed write")
            assert time.monotonic() - down_since >= 2.0
            assert bridge.stats.acked == 1, "messages must stay unacked while InfluxDB is down"
            assert bridge.stats.influx_ok is False

            await asyncio.to_thread(influx.start)
            await wait_until(lambda: bridge.stats.acked == 21, WAIT, "every message to be acked after the restart")
            assert bridge.stats.influx_ok is True
        assert await count_points(influx, database) == 21 * 3
        assert bridge.stats.malformed == 0
    finally:
        publisher.close()


async def test_messages_wait_in_the_broker_when_the_bridge_stops_during_an_outage(
    fresh_influxdb1: InfluxDB1, fresh_mosquitto: Mosquitto
) -> None:
    """The strongest form of "kept unacked": the bridge that received them is gone, a new one writes them."""
    influx, database, prefix = fresh_influxdb1, unique_name("db"), unique_name("edge")
    influx.create_database(database)
    origin = Origin("s", "a", "l", "m2")
    publisher = Publisher(fresh_mosquitto)
    config = InfluxConfig(version=1, url=influx.url, database=database, timeout=2.0)
    ingest = ingest_config()  # the same client id for both runs: the broker keeps its session
    try:
        await asyncio.to_thread(influx.stop)
        async with running_bridge(mqtt_config(fresh_mosquitto, prefix), ingest, config, **FAST) as first:
            for index in range(10):
                await publisher.apublish(origin.topic(prefix, "telemetry"), message(origin, index))
            await wait_until(lambda: first.stats.received == 10, WAIT, "the first bridge to receive all messages")
            await wait_until(lambda: first.stats.write_errors >= 1, WAIT, "the first bridge to fail writing")
        # leaving running_bridge stops the bridge and fails if it is not stopped within 5 s: no hang in an outage
        assert first.stats.acked == 0

        await asyncio.to_thread(influx.start)
        async with running_bridge(mqtt_config(fresh_mosquitto, prefix), ingest, config, **FAST) as second:
            await wait_until(
                lambda: second.stats.acked == 10, WAIT, "the second bridge to write the redelivered messages"
            )
        assert await count_points(influx, database) == 30
    finally:
        publisher.close()


async def test_bridge_reconnects_after_a_broker_restart(fresh_mosquitto: Mosquitto, influxdb1: InfluxDB1) -> None:
    database, prefix = unique_name("db"), unique_name("edge")
    influxdb1.create_database(database)
    origin = Origin("s", "a", "l", "m3")
    config = InfluxConfig(version=1, url=influxdb1.url, database=database, timeout=2.0)
    async with running_bridge(mqtt_config(fresh_mosquitto, prefix), ingest_config(), config, **FAST) as bridge:
        publisher = Publisher(fresh_mosquitto)
        await publisher.apublish(origin.topic(prefix, "telemetry"), message(origin, 0))
        publisher.close()
        await wait_until(lambda: bridge.stats.acked == 1, WAIT, "the first message to be acked")

        await asyncio.to_thread(fresh_mosquitto.restart)
        publisher = Publisher(fresh_mosquitto)  # publishes right away: the session kept the subscription
        try:
            await publisher.apublish(origin.topic(prefix, "telemetry"), message(origin, 1))
            await wait_until(lambda: bridge.stats.acked == 2, 20, "the message published after the restart")
        finally:
            publisher.close()
    assert await count_points(influxdb1, database) == 6


async def test_cancelling_the_bridge_stops_it_within_five_seconds(
    fresh_influxdb1: InfluxDB1, mosquitto: Mosquitto
) -> None:
    """Cancelled while InfluxDB is down and a write is being retried: the worst moment to stop."""
    database = unique_name("db")
    config = InfluxConfig(version=1, url=fresh_influxdb1.url, database=database, timeout=2.0)
    writer = make_writer(config)
    prefix = unique_name("edge")
    bridge = IngestBridge(mqtt_config(mosquitto, prefix), ingest_config(), writer)
    task = asyncio.create_task(bridge.run(asyncio.Event()))
    publisher = Publisher(mosquitto)
    try:
        async with asyncio.timeout(15):
            await bridge.wait_ready()
        await asyncio.to_thread(fresh_influxdb1.stop)
        await publisher.apublish(
            Origin("s", "a", "l", "m4").topic(prefix, "telemetry"), message(Origin("s", "a", "l", "m4"), 0)
        )
        await wait_until(lambda: bridge.stats.write_errors >= 1, WAIT, "a failed write")
        task.cancel()
        done, _ = await asyncio.wait({task}, timeout=5.0)
        assert done, "the bridge did not stop within 5 s of being cancelled"
        assert bridge.stats.connected is False
    finally:
        task.cancel()
        publisher.close()
        await writer.close()


async def test_shared_subscription_splits_the_stream_without_loss(mosquitto: Mosquitto, influxdb1: InfluxDB1) -> None:
    database, prefix, group = unique_name("db"), unique_name("edge"), unique_name("g")
    influxdb1.create_database(database)
    config = InfluxConfig(version=1, url=influxdb1.url, database=database, timeout=2.0)
    broker = mqtt_config(mosquitto, prefix)
    publisher = Publisher(mosquitto)
    try:
        async with (
            running_bridge(broker, ingest_config(share_group=group), config) as one,
            running_bridge(broker, ingest_config(share_group=group), config) as two,
        ):
            for index in range(30):
                origin = Origin("s", "a", "l", f"m{index % 3}")
                await publisher.apublish(origin.topic(prefix, "telemetry"), message(origin, index))
            await wait_until(lambda: one.stats.acked + two.stats.acked == 30, WAIT, "all 30 messages to be acked")
        assert one.stats.received + two.stats.received == 30
        assert one.stats.received > 0
        assert two.stats.received > 0
        assert await count_points(influxdb1, database) == 90
    finally:
        publisher.close()


async def test_two_bridges_with_one_client_id_are_reported(
    mosquitto: Mosquitto, influxdb1: InfluxDB1, caplog: pytest.LogCaptureFixture
) -> None:
    """The default client id is fixed, so a second bridge started by mistake must say what is wrong."""
    caplog.set_level(logging.INFO, logger="edge_agent.ingest")
    config = InfluxConfig(version=1, url=influxdb1.url, database=unique_name("db"), timeout=2.0)
    ingest = ingest_config()
    broker = mqtt_config(mosquitto, unique_name("edge"))
    async with running_bridge(broker, ingest, config), running_bridge(broker, ingest, config):
        await wait_until(
            lambda: any("keeps dropping right after it is made" in r.getMessage() for r in caplog.records),
            20,
            "the session take-over to be reported",
        )
    assert "ingest.client_id" in caplog.text
