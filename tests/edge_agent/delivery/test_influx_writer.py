"""The InfluxDB writers against real servers: exact values back, and the right error for each failure.

InfluxDB 2 cannot be installed on this machine (it is not packaged for Debian), so the v2 path
(``InfluxV2Writer``, influxdb-client's async client, ``/api/v2/write``) is tested against
VictoriaMetrics, which speaks the same write API. VictoriaMetrics names a line-protocol field
``measurement_field``, keeps millisecond timestamps, turns booleans into 1/0 and drops string
text, so the v2 tests compare numbers at millisecond-aligned times.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from pathlib import Path

import pytest

from edge_agent.core.errors import SinkError
from edge_agent.core.origin import Origin
from edge_agent.core.samples import Batch, Sample
from edge_agent.delivery.config import InfluxConfig
from edge_agent.delivery.influx_writer import InfluxV1Writer, InfluxV2Writer, RejectedPoints, WriteFailed, make_writer
from edge_agent.delivery.payloads import decode_json, encode_json, to_line_protocol
from tests.helpers.ingest_bridge import (
    WAIT,
    Publisher,
    ingest_config,
    mqtt_config,
    publishing,
    running_bridge,
)
from tests.helpers.servers import InfluxDB1, Mosquitto, VictoriaMetrics, free_port, unique_name
from tests.helpers.waiting import wait_until

T0_MS = 1_763_800_000_123  # VictoriaMetrics stores milliseconds
T0 = T0_MS * 1_000_000


@pytest.fixture
def publisher(mosquitto: Mosquitto) -> Iterator[Publisher]:
    """The agent's side of the broker, for the test that goes through the ingest bridge."""
    with publishing(mosquitto) as pub:
        yield pub


def v2_config(server: VictoriaMetrics, **extra: object) -> InfluxConfig:
    values: dict[str, object] = {"version": 2, "url": server.url, "org": "plant", "bucket": "telemetry", "timeout": 5.0}
    values.update(extra)
    return InfluxConfig.model_validate(values)


def lines_for(origin: Origin, batch: Batch) -> list[str]:
    return to_line_protocol(decode_json(encode_json(batch, origin)))


def series(server: VictoriaMetrics, metric: str, machine: str) -> dict[str, tuple[list[float], list[int]]]:
    """tag → (values, timestamps in ms) of one metric of one machine."""
    found = server.export(f'{metric}{{machine="{machine}"}}')
    return {item["metric"]["tag"]: (item["values"], item["timestamps"]) for item in found}


async def test_v2_writer_writes_exact_values_to_the_v2_write_api(victoria_metrics: VictoriaMetrics) -> None:
    machine = unique_name("m")
    origin = Origin("s", "a", "l", machine)
    batch = Batch(
        machine,
        (
            Sample("flow", 12.625, T0),
            Sample("flow", 13.5, T0 + 1_000_000),
            Sample("count", 42, T0),
            Sample("running", True, T0),
        ),
    )
    writer = InfluxV2Writer(v2_config(victoria_metrics))
    try:
        await writer.ping()
        await writer.write(lines_for(origin, batch))
    finally:
        await writer.close()
    values = await asyncio.to_thread(series, victoria_metrics, "telemetry_value", machine)
    assert values == {"flow": ([12.625, 13.5], [T0_MS, T0_MS + 1]), "count": ([42.0], [T0_MS])}
    booleans = await asyncio.to_thread(series, victoria_metrics, "telemetry_value_bool", machine)
    assert booleans == {"running": ([1.0], [T0_MS])}


async def test_bridge_writes_through_the_v2_writer(
    mosquitto: Mosquitto, victoria_metrics: VictoriaMetrics, publisher: Publisher
) -> None:
    machine, prefix = unique_name("m"), unique_name("edge")
    origin = Origin("s", "a", "l", machine)
    config = v2_config(victoria_metrics, token="not-checked-by-victoria-metrics")
    async with running_bridge(mqtt_config(mosquitto, prefix), ingest_config(), config) as bridge:
        await publisher.apublish(
            origin.topic(prefix, "telemetry"), encode_json(Batch(machine, (Sample("t", 7.5, T0),)), origin)
        )
        await wait_until(lambda: bridge.stats.acked == 1, WAIT, "the message to be written and acked")
    values = await asyncio.to_thread(series, victoria_metrics, "telemetry_value", machine)
    assert values == {"t": ([7.5], [T0_MS])}


@pytest.mark.parametrize("version", [1, 2])
async def test_unreachable_influxdb_is_a_retryable_sink_error_without_secrets(version: int) -> None:
    url = f"http://127.0.0.1:{free_port()}"  # nothing listens there
    config = InfluxConfig.model_validate(
        {
            "version": version,
            "url": url,
            "database": "db",
            "org": "o",
            "bucket": "b",
            "username": "user",
            "password": "pa55-word-secret",
            "token": "t0ken-secret",
            "timeout": 2.0,
        }
    )
    writer = make_writer(config)
    try:
        with pytest.raises(WriteFailed) as caught:
            await writer.write(["m f=1 1763800000000000000"])
        with pytest.raises(WriteFailed):
            await writer.ping()
    finally:
        await writer.close()
    error = caught.value
    assert isinstance(error, SinkError)
    assert error.retryable
    assert not isinstance(error, RejectedPoints)
    assert error.__cause__ is not None
    assert url in str(error)
    assert "secret" not in str(error)


async def test_v1_field_type_conflict_is_rejected_points(influxdb1: InfluxDB1) -> None:
    database = unique_name("db")
    influxdb1.create_database(database)
    writer = InfluxV1Writer(InfluxConfig(version=1, url=influxdb1.url, database=database))
    try:
        await writer.write(["m f=1.5 1763800000000000000"])
        with pytest.raises(RejectedPoints) as caught:
            await writer.write(['m f="text" 1763800000000000001'])
    finally:
        await writer.close()
    assert caught.value.status == 400
    assert not caught.value.retryable
    assert "field type conflict" in caught.value.detail


async def test_v1_missing_database_is_retryable_and_says_how_to_fix_it(influxdb1: InfluxDB1) -> None:
    writer = InfluxV1Writer(InfluxConfig(version=1, url=influxdb1.url, database="no_such_db"))
    try:
        with pytest.raises(WriteFailed) as caught:
            await writer.write(["m f=1 1763800000000000000"])
    finally:
        await writer.close()
    assert caught.value.retryable
    assert caught.value.status == 404
    assert 'CREATE DATABASE "no_such_db"' in str(caught.value)


async def test_v1_basic_auth_and_refused_credentials(tmp_path: Path) -> None:
    """With auth enabled: the right password writes; a wrong one is retryable and never echoed back."""
    with InfluxDB1(tmp_path / "influx-auth", admin=("admin", "right-secret")) as server:
        server.create_database("secured")
        good = InfluxV1Writer(
            InfluxConfig(version=1, url=server.url, database="secured", username="admin", password="right-secret")
        )
        bad = InfluxV1Writer(
            InfluxConfig(version=1, url=server.url, database="secured", username="admin", password="wrong-secret")
        )
        try:
            await good.write(["m f=1 1763800000000000000"])
            with pytest.raises(WriteFailed) as caught:
                await bad.write(["m f=2 1763800000000000000"])
        finally:
            await good.close()
            await bad.close()
        rows = await asyncio.to_thread(server.query, "SELECT f FROM m", "secured")
    assert rows == [{"time": 1763800000000000000, "f": 1}]
    assert caught.value.status == 401
    assert caught.value.retryable
    assert "influxdb.username and influxdb.password" in str(caught.value)
    assert "secret" not in str(caught.value)
