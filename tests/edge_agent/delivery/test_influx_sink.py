"""The direct InfluxDB sink (single box, no broker) against a real InfluxDB 1.x that a test stops and starts."""

from __future__ import annotations

import asyncio
import logging
from pathlib import Path

import pytest

from edge_agent.core.backoff import Backoff
from edge_agent.core.origin import Origin
from edge_agent.delivery.config import InfluxConfig, OutboxConfig
from edge_agent.delivery.influx_sink import InfluxSink
from edge_agent.runtime.agent import Agent
from edge_agent.runtime.config import AgentConfig
from tests.helpers.servers import InfluxDB1, unique_name
from tests.helpers.telemetry import T0, telemetry_points, xy_batch
from tests.helpers.waiting import wait_until

ORIGIN = Origin("s", "a", "l", "m1")


async def test_batches_wait_in_the_outbox_while_influxdb_is_down(fresh_influxdb1: InfluxDB1, tmp_path: Path) -> None:
    database = unique_name("db")
    await asyncio.to_thread(fresh_influxdb1.create_database, database)
    config = InfluxConfig(version=1, url=fresh_influxdb1.url, database=database, timeout=2.0)
    sink = InfluxSink(
        config, "s", OutboxConfig(path=str(tmp_path / "o.sqlite")), backoff=Backoff(initial=0.05, cap=0.3)
    )
    await sink.start()
    try:
        for i in range(10):
            await sink.submit(xy_batch(i), ORIGIN)
        await wait_until(lambda: sink.stats.written_points == 20, 15, "first points written")
        await asyncio.to_thread(fresh_influxdb1.stop)
        for i in range(10, 510):
            await sink.submit(xy_batch(i), ORIGIN)
        await wait_until(lambda: not sink.influx_ok, 15, "the sink notices")
        assert sink.outbox.stats.entries >= 490
        await asyncio.to_thread(fresh_influxdb1.start)
        await wait_until(lambda: sink.outbox.stats.entries == 0, 30, "backlog written", detail=lambda: sink.stats)
    finally:
        await sink.close()
    assert await asyncio.to_thread(telemetry_points, fresh_influxdb1, database) == 1020
    assert sink.stats.writes < 50, "the backlog goes in large writes"


async def test_refused_batch_is_counted_and_the_rest_written(
    influxdb1: InfluxDB1, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    database = unique_name("db")
    await asyncio.to_thread(influxdb1.create_database, database)
    config = InfluxConfig(version=1, url=influxdb1.url, database=database)
    sink = InfluxSink(config, "s", OutboxConfig(path=str(tmp_path / "o.sqlite")))
    await sink.start()
    try:
        await sink.submit(xy_batch(0), ORIGIN)
        await wait_until(lambda: sink.outbox.stats.entries == 0, 15, "first batch")
        # 'x' holds floats in 'value'; hand-made line protocol writing a string into 'value' conflicts.
        bad = f'telemetry,site=s,area=a,line=l,machine=m1,tag=x quality="good",value="text" {T0 + 1}'
        await sink.outbox.append("m1", bad.encode(), 1)
        for i in range(2, 6):
            await sink.submit(xy_batch(i), ORIGIN)
        await wait_until(lambda: sink.outbox.stats.entries == 0, 15, "rest written", detail=lambda: sink.stats)
    finally:
        await sink.close()
    assert sink.stats.rejected == 1
    assert await asyncio.to_thread(telemetry_points, influxdb1, database) == 10
    assert [r.levelno for r in caplog.records if "refused" in r.getMessage()] == [logging.ERROR]


async def test_agent_writes_straight_to_influxdb_when_told(influxdb1: InfluxDB1, tmp_path: Path) -> None:
    database = unique_name("db")
    await asyncio.to_thread(influxdb1.create_database, database)
    config = AgentConfig.model_validate(
        {
            "influxdb": {"version": 1, "url": influxdb1.url, "database": database},
            "outbox": {"path": str(tmp_path / "o.sqlite"), "deliver_to": "influxdb"},
        }
    )
    agent = Agent(config)
    assert agent.publisher is None
    assert agent.influx_sink is not None
    assert agent.sinks == [agent.influx_sink]


def test_direct_influxdb_needs_the_influxdb_section() -> None:
    with pytest.raises(ValueError, match=r"outbox\.deliver_to is influxdb but there is no influxdb section"):
        AgentConfig.model_validate({"outbox": {"deliver_to": "influxdb"}})


def test_outbox_keys_parse_sizes_and_durations_and_refuse_a_useless_bound() -> None:
    from edge_agent.core.errors import ConfigError
    from edge_agent.runtime.loader import parse_config

    config = parse_config("outbox:\n  max_bytes: 64MiB\n  max_age: 2d\n  synchronous: full\n", "plant.yaml")
    assert (config.outbox.max_bytes, config.outbox.max_age, config.outbox.synchronous) == (64 * 2**20, 172800.0, "full")
    with pytest.raises(ConfigError) as info:
        parse_config("outbox:\n  max_bytes: 10\n", "plant.yaml")
    assert "outbox.max_bytes" in info.value.problems[0]
    assert "Fix:" in info.value.problems[0]
