"""`ingest.dead_letter_prefix` from the config file: honoured by `edge-agent ingest`, checked at load.

The operator's path: a YAML config → ``run_ingest`` (what ``edge-agent ingest`` runs) → real
Mosquitto and InfluxDB 1.x. A prefix that would make the bridge read its own dead letters back,
or one with wildcards, is refused when the config is loaded, naming the key and the fix.
"""

from __future__ import annotations

import asyncio
import contextlib

import pytest

from edge_agent.core.errors import ConfigError
from edge_agent.core.origin import Origin
from edge_agent.ingest.bridge import run_ingest
from edge_agent.runtime.loader import parse_config
from tests.helpers.ingest_bridge import (
    DeadLetters,
    Publisher,
    count_points,
    good,
)
from tests.helpers.servers import InfluxDB1, Mosquitto, unique_name
from tests.helpers.waiting import wait_until


def config_text(broker: Mosquitto, influx: InfluxDB1, database: str, prefix: str, dead_letters: str) -> str:
    return f"""
site: {{name: s, area: a, line: l}}
mqtt: {{host: {broker.host}, port: {broker.port}, topic_prefix: {prefix}}}
influxdb: {{version: 1, url: "{influx.url}", database: {database}}}
ingest: {{client_id: {unique_name("ingest")}, flush_interval: 200ms, dead_letter_prefix: {dead_letters}}}
machines: []
"""


async def test_the_configured_dead_letter_prefix_is_where_edge_agent_ingest_sends_bad_payloads(
    mosquitto: Mosquitto, influxdb1: InfluxDB1, publisher: Publisher
) -> None:
    prefix = unique_name("edge")
    dead_prefix = unique_name("quarantine")
    database = unique_name("db")
    influxdb1.create_database(database)
    # Not under the telemetry prefix at all: only the configured key can send letters there.
    text = config_text(mosquitto, influxdb1, database, prefix, f"{dead_prefix}/_deadletter")
    config = parse_config(text, "plant.yaml")
    origin = Origin("s", "a", "l", "m1")
    topic = origin.topic(prefix, "telemetry")
    listener = DeadLetters(mosquitto, dead_prefix)
    stop = asyncio.Event()
    task = asyncio.create_task(run_ingest(config, stop), name="ingest-under-test")

    async def written(expected: int) -> bool:
        if await count_points(influxdb1, database) == expected:
            return True
        if expected == 2:  # the bridge may not be subscribed yet: send again (same points, overwritten)
            await publisher.apublish(topic, good(origin, 1))
        return False

    try:
        await wait_until(lambda: written(2), 30, "the bridge to write a first good message", interval=0.1)
        await publisher.apublish(topic, b"{this is not json")
        await publisher.apublish(topic, good(origin, 2))
        await wait_until(lambda: len(listener.received()) == 1, 30, "the dead letter on the configured prefix")
        await wait_until(lambda: written(4), 30, "the good message after the bad one", interval=0.1)
        assert not task.done(), "the bridge stopped after a malformed payload"
        [(dead_topic, envelope)] = listener.received()
        assert dead_topic == f"{dead_prefix}/_deadletter/s/a/l/m1/telemetry"
        assert envelope["topic"] == topic
        assert "not valid JSON" in str(envelope["reason"])
    finally:
        stop.set()
        async with asyncio.timeout(10):
            with contextlib.suppress(asyncio.CancelledError):
                await task
        listener.close()


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("edge", "is the telemetry prefix"),
        ("edge/", "is the telemetry prefix"),
        ("edge/+/dead", "cannot be a topic prefix"),
        ("dead/#", "cannot be a topic prefix"),
        ('"/"', "cannot be a topic prefix"),
    ],
)
def test_a_dead_letter_prefix_the_bridge_would_read_back_is_refused_at_load(value: str, expected: str) -> None:
    text = f"""
site: {{name: s, area: a, line: l}}
mqtt: {{host: 127.0.0.1, topic_prefix: edge}}
influxdb: {{version: 1, url: "http://127.0.0.1:8086", database: plant}}
ingest: {{dead_letter_prefix: {value}}}
machines: []
"""
    with pytest.raises(ConfigError) as info:
        parse_config(text, "plant.yaml")
    message = str(info.value)
    assert "plant.yaml" in message
    assert "dead_letter_prefix" in message
    assert expected in message
    assert "Fix:" in message
