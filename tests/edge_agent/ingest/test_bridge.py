"""The ingest bridge end to end: real Mosquitto → IngestBridge → real InfluxDB 1.x, read back with InfluxQL.

Payloads are built with ``edge_agent.delivery.payloads.encode_json`` (the publisher's own encoder), so the
tests check the contract between the agent and the bridge, not a copy of it.
"""

from __future__ import annotations

import asyncio
from contextlib import AbstractAsyncContextManager
from pathlib import Path

import pytest

from edge_agent.core.errors import ConfigError
from edge_agent.core.origin import Origin
from edge_agent.core.samples import Batch, Quality, Sample
from edge_agent.delivery.config import InfluxConfig, TlsConfig
from edge_agent.delivery.influx_writer import make_writer
from edge_agent.delivery.payloads import encode_json, encode_line_protocol
from edge_agent.ingest.bridge import IngestBridge, run_ingest
from edge_agent.runtime.config import AgentConfig
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

T0 = 1_763_800_000_123_456_789  # ns, deliberately not a round millisecond


def influx_v1(server: InfluxDB1, database: str) -> InfluxConfig:
    return InfluxConfig(version=1, url=server.url, database=database, timeout=5.0)


def v1_bridge(
    broker: Mosquitto, influx: InfluxDB1, database: str, prefix: str
) -> AbstractAsyncContextManager[IngestBridge]:
    return running_bridge(mqtt_config(broker, prefix), ingest_config(), influx_v1(influx, database))


def sample_batch(machine: str, t0: int = T0) -> Batch:
    return Batch(
        machine,
        (
            Sample("flow", 12.5, t0, unit="m3/h"),
            Sample("count", 7, t0 + 1),
            Sample("running", True, t0 + 2),
            Sample("mode", "AUTO", t0 + 3),
            Sample("pressure", 3.25, t0 + 4, Quality.UNCERTAIN, "sensor warming up"),
            Sample.bad("temperature", "Modbus exception 2 (illegal data address)", t0 + 5),
        ),
        polled_at_ns=t0 + 10,
    )


def row(origin: Origin, time: int, tag: str, quality: str, **fields: object) -> dict[str, object]:
    expected: dict[str, object] = {
        "time": time,
        "site": origin.site,
        "area": origin.area,
        "line": origin.line,
        "machine": origin.machine,
        "tag": tag,
        "quality": quality,
        "reason": None,
        "value": None,
        "value_bool": None,
        "value_str": None,
    }
    expected.update(fields)
    return expected


async def test_json_telemetry_arrives_with_exact_values_timestamps_and_tags(
    mosquitto: Mosquitto, influxdb1: InfluxDB1, publisher: Publisher
) -> None:
    database, prefix = unique_name("db"), unique_name("edge")
    influxdb1.create_database(database)
    origin = Origin("plant-1", "press shop", "line=2", "pump,1")  # spaces, '=' and ',' need escaping
    async with v1_bridge(mosquitto, influxdb1, database, prefix) as bridge:
        await publisher.apublish(origin.topic(prefix, "telemetry"), encode_json(sample_batch(origin.machine), origin))
        await wait_until(lambda: bridge.stats.acked == 1, WAIT, "the message to be written and acked")

    rows = await asyncio.to_thread(influxdb1.query, "SELECT * FROM telemetry", database)
    assert sorted(rows, key=lambda r: int(r["time"])) == [
        row(origin, T0, "flow", "good", value=12.5),
        row(origin, T0 + 1, "count", "good", value=7.0),
        row(origin, T0 + 2, "running", "good", value_bool=True),
        row(origin, T0 + 3, "mode", "good", value_str="AUTO"),
        row(origin, T0 + 4, "pressure", "uncertain", value=3.25, reason="sensor warming up"),
        row(origin, T0 + 5, "temperature", "bad", reason="Modbus exception 2 (illegal data address)"),
    ]
    assert bridge.stats.received == 1
    assert bridge.stats.written_points == 6
    assert bridge.stats.malformed == 0


async def test_line_protocol_payload_is_passed_through(
    mosquitto: Mosquitto, influxdb1: InfluxDB1, publisher: Publisher
) -> None:
    database, prefix = unique_name("db"), unique_name("edge")
    influxdb1.create_database(database)
    origin = Origin("s", "a", "l", "press-3")
    batch = Batch("press-3", (Sample("force", 101.5, T0), Sample("closed", False, T0)))
    async with v1_bridge(mosquitto, influxdb1, database, prefix) as bridge:
        await publisher.apublish(origin.topic(prefix, "telemetry"), encode_line_protocol(batch, origin))
        await wait_until(lambda: bridge.stats.acked == 1, WAIT, "the message to be written and acked")
    rows = await asyncio.to_thread(influxdb1.query, 'SELECT "tag", value, value_bool, quality FROM telemetry', database)
    assert sorted(rows, key=lambda r: str(r["tag"])) == [
        {"time": T0, "tag": "closed", "value": None, "value_bool": False, "quality": "good"},
        {"time": T0, "tag": "force", "value": 101.5, "value_bool": None, "quality": "good"},
    ]


async def test_redelivered_message_overwrites_instead_of_duplicating(
    mosquitto: Mosquitto, influxdb1: InfluxDB1, publisher: Publisher
) -> None:
    database, prefix = unique_name("db"), unique_name("edge")
    influxdb1.create_database(database)
    origin = Origin("s", "a", "l", "m1")
    payload = encode_json(sample_batch("m1"), origin)
    async with v1_bridge(mosquitto, influxdb1, database, prefix) as bridge:
        await publisher.apublish(origin.topic(prefix, "telemetry"), payload)
        await wait_until(lambda: bridge.stats.acked == 1, WAIT, "the first copy to be acked")
        assert await count_points(influxdb1, database) == 6
        await publisher.apublish(origin.topic(prefix, "telemetry"), payload)
        await wait_until(lambda: bridge.stats.acked == 2, WAIT, "the second copy to be acked")
    assert bridge.stats.written_points == 12  # written twice ...
    assert await count_points(influxdb1, database) == 6  # ... stored once


async def test_malformed_payloads_are_counted_and_do_not_block_the_stream(
    mosquitto: Mosquitto, influxdb1: InfluxDB1, publisher: Publisher
) -> None:
    database, prefix = unique_name("db"), unique_name("edge")
    influxdb1.create_database(database)
    origin = Origin("s", "a", "l", "m2")
    topic = origin.topic(prefix, "telemetry")
    good = encode_json(Batch("m2", (Sample("flow", 1.5, T0),)), origin)
    nan = good.replace(b'"v":1.5', b'"v":NaN')
    overflow = good.replace(b'"v":1.5', b'"v":1e999')  # parses as infinity in Python's json
    malformed = [
        b"{this is not json",
        good.replace(b'"schema":1', b'"schema":2'),
        nan,
        overflow,
        good.replace(b'"machine":"m2",', b""),
        good.replace(b'"tag":"flow",', b""),
        b'"just a string"',
        b"hello",
        b"telemetry,machine=m2 value=1.0",  # line protocol without a timestamp
        b"telemetry,machine=m2 value=1.0 1763800000",  # seconds, not nanoseconds
        b"",
    ]
    assert nan != good
    assert overflow != good
    async with v1_bridge(mosquitto, influxdb1, database, prefix) as bridge:
        for payload in malformed:
            await publisher.apublish(topic, payload)
        await publisher.apublish(topic, good)
        await wait_until(lambda: bridge.stats.acked == len(malformed) + 1, WAIT, "every message to be acked")
    assert bridge.stats.malformed == len(malformed)
    assert bridge.stats.received == len(malformed) + 1
    assert bridge.stats.written_points == 1
    rows = await asyncio.to_thread(influxdb1.query, "SELECT value, quality FROM telemetry", database)
    assert rows == [{"time": T0, "value": 1.5, "quality": "good"}]
    assert sum(bridge.stats.malformed_by_kind.values()) == len(malformed)


async def test_points_refused_by_influxdb_are_counted_and_the_rest_of_the_batch_arrives(
    mosquitto: Mosquitto, influxdb1: InfluxDB1, publisher: Publisher
) -> None:
    """A field type conflict is a 400 from InfluxDB: the bridge isolates that message and acks it."""
    database, prefix = unique_name("db"), unique_name("edge")
    influxdb1.create_database(database)
    origin = Origin("s", "a", "l", "m3")
    topic = origin.topic(prefix, "telemetry")
    conflicting = (
        b'telemetry,site=s,area=a,line=l,machine=m3,tag=flow value="text",quality="good" ' + str(T0 + 1).encode()
    )
    # A long flush interval and a long linger so all three land in one batch.
    async with running_bridge(
        mqtt_config(mosquitto, prefix),
        ingest_config(flush_interval=1.0),
        influx_v1(influxdb1, database),
        linger=1.0,
    ) as bridge:
        await publisher.apublish(topic, encode_json(Batch("m3", (Sample("flow", 1.0, T0),)), origin))
        await publisher.apublish(topic, conflicting)
        await publisher.apublish(topic, encode_json(Batch("m3", (Sample("flow", 2.0, T0 + 2),)), origin))
        await wait_until(lambda: bridge.stats.acked == 3, WAIT, "all three messages to be acked")
    assert bridge.stats.rejected == 1
    rows = await asyncio.to_thread(influxdb1.query, "SELECT value FROM telemetry", database)
    assert rows == [{"time": T0, "value": 1.0}, {"time": T0 + 2, "value": 2.0}]


async def test_run_ingest_bridges_until_stop_is_set(
    mosquitto: Mosquitto, influxdb1: InfluxDB1, publisher: Publisher
) -> None:
    """The entry point the CLI calls, built from a whole AgentConfig."""
    database, prefix = unique_name("db"), unique_name("edge")
    influxdb1.create_database(database)
    origin = Origin("s", "a", "l", "m9")
    config = AgentConfig(
        mqtt=mqtt_config(mosquitto, prefix),
        influxdb=influx_v1(influxdb1, database),
        ingest=ingest_config(flush_interval=0.1),
    )
    stop = asyncio.Event()
    task = asyncio.create_task(run_ingest(config, stop))
    try:
        # run_ingest exposes no bridge object: wait for the broker to report the subscription instead.
        payload = encode_json(Batch("m9", (Sample("x", 2.5, T0),)), origin)

        async def arrived() -> bool:
            await publisher.apublish(origin.topic(prefix, "telemetry"), payload)  # idempotent: may repeat
            return await count_points(influxdb1, database) == 1

        await wait_until(arrived, WAIT, "the point to arrive through run_ingest", interval=0.2)
        stop.set()
        async with asyncio.timeout(5):
            await task
    finally:
        task.cancel()


async def test_run_ingest_names_a_missing_section() -> None:
    with pytest.raises(ConfigError) as caught:
        await run_ingest(AgentConfig(), asyncio.Event())
    assert any(p.startswith("mqtt:") for p in caught.value.problems)
    assert any(p.startswith("influxdb:") for p in caught.value.problems)


async def test_points_are_batched_by_batch_size(
    mosquitto: Mosquitto, influxdb1: InfluxDB1, publisher: Publisher
) -> None:
    """30 messages of 3 points with batch_size 30 and long timers: exactly three writes of ten messages."""
    database, prefix = unique_name("db"), unique_name("edge")
    influxdb1.create_database(database)
    origin = Origin("s", "a", "l", "m5")
    async with running_bridge(
        mqtt_config(mosquitto, prefix),
        ingest_config(batch_size=30, flush_interval=10.0),
        influx_v1(influxdb1, database),
        linger=10.0,
    ) as bridge:
        for index in range(30):
            t = T0 + index * 1000
            batch = Batch("m5", (Sample("a", 1.0, t), Sample("b", 2.0, t), Sample("c", 3.0, t)))
            await publisher.apublish(origin.topic(prefix, "telemetry"), encode_json(batch, origin))
        await wait_until(lambda: bridge.stats.acked == 30, WAIT, "all 30 messages to be acked")
    assert bridge.stats.writes == 3
    assert bridge.stats.written_points == 90
    assert await count_points(influxdb1, database) == 90


async def test_unreadable_tls_files_are_a_config_error(
    mosquitto: Mosquitto, influxdb1: InfluxDB1, tmp_path: Path
) -> None:
    missing = tmp_path / "no-such-ca.pem"
    broker = mqtt_config(mosquitto, "edge").model_copy(update={"tls": TlsConfig(ca_file=str(missing))})
    writer = make_writer(influx_v1(influxdb1, "unused"))
    bridge = IngestBridge(broker, ingest_config(), writer)
    try:
        with pytest.raises(ConfigError, match=r"mqtt\.tls: cannot load the certificates"):
            async with asyncio.timeout(10):
                await bridge.run(asyncio.Event())
    finally:
        await writer.close()
