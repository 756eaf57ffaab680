"""What the operator sees while an outage's backlog drains: start, progress and end lines, and the status.

Real Mosquitto and InfluxDB 1.x, stopped and started by the test; the counts in the log lines are
checked against the outbox and against what arrived, and nothing may be lost. The progress
interval is shortened (10 s in production) so a replay of a few thousand entries shows some.
"""

from __future__ import annotations

import asyncio
import itertools
import logging
import re
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from edge_agent.core.backoff import Backoff
from edge_agent.core.origin import Origin
from edge_agent.delivery.config import InfluxConfig, MqttConfig, OutboxConfig
from edge_agent.delivery.influx_sink import InfluxSink
from edge_agent.delivery.outbox import Outbox
from edge_agent.delivery.publisher import MqttPublisher
from edge_agent.delivery.replay import BacklogReplay
from tests.helpers.mqtt import Subscriber
from tests.helpers.publisher import running_publisher
from tests.helpers.servers import InfluxDB1, Mosquitto, unique_name
from tests.helpers.telemetry import T0, batch, telemetry_points, xy_batch
from tests.helpers.waiting import wait_until

ORIGIN = Origin("s", "a", "l", "m1")
EVERY_S = 0.05
START = re.compile(r"backlog: replaying ([\d,]+) entries \(([\d.]+) MiB\) to (.+), oldest first")
PROGRESS = re.compile(r"backlog: ([\d,]+) of ([\d,]+) sent \((\d+) %\), (.+); polling goes on, ([\d,]+) new batches")
END = re.compile(r"backlog: replayed ([\d,]+) entries to (.+) in (.+) \((.+)\)$")


def number(text: str) -> int:
    return int(text.replace(",", ""))


def backlog_lines(caplog: pytest.LogCaptureFixture) -> list[logging.LogRecord]:
    return [r for r in caplog.records if r.name == "edge_agent.delivery.replay"]


@pytest.fixture
async def publisher(fresh_mosquitto: Mosquitto, prefix: str, tmp_path: Path) -> AsyncIterator[MqttPublisher]:
    async with running_publisher(
        fresh_mosquitto, prefix, tmp_path / "o.sqlite", max_in_flight=20, replay_every_s=EVERY_S
    ) as pub:
        yield pub


async def test_mqtt_backlog_replay_is_reported_from_start_to_end(
    fresh_mosquitto: Mosquitto,
    subscriber: Subscriber,
    publisher: MqttPublisher,
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.INFO)
    await wait_until(lambda: publisher.connected, 15, "first connect")
    for i in range(10):  # a few while connected: a small outbox is no episode
        await publisher.submit(batch(i), ORIGIN)
    await wait_until(lambda: publisher.outbox.stats.entries == 0, 15, "first batches delivered")
    await asyncio.to_thread(fresh_mosquitto.stop)
    await wait_until(lambda: not publisher.connected, 15, "publisher sees the broker gone")
    total = 6000
    for i in range(10, total):
        await publisher.submit(batch(i), ORIGIN)
    waiting = publisher.outbox.stats.entries
    waiting_mib = publisher.outbox.stats.bytes / 2**20
    assert waiting >= total - 10 - publisher.max_in_flight
    assert not backlog_lines(caplog), "no episode before the broker is back"

    await asyncio.to_thread(fresh_mosquitto.start)
    await wait_until(lambda: publisher.replay.active, 30, "replay starts on reconnect")
    live = 100
    for i in range(total, total + live):  # polling goes on during the replay
        await publisher.submit(batch(i), ORIGIN)
    await wait_until(
        lambda: len(subscriber.samples) == total + live and publisher.outbox.stats.entries == 0,
        90,
        "backlog and live batches delivered",
        detail=lambda: (len(subscriber.samples), publisher.outbox.stats, publisher.replay.state()),
    )
    await wait_until(lambda: not publisher.replay.active, 15, "episode over")

    assert set(subscriber.samples) == {("m1", "x", T0 + i) for i in range(total + live)}, "nothing lost"
    assert publisher.outbox.stats.dropped_batches == 0
    records = backlog_lines(caplog)
    messages = [r.getMessage() for r in records]
    starts = [m for m in messages if START.match(m)]
    ends = [m for m in messages if END.search(m)]
    progress = [(r, m) for r in records if (m := PROGRESS.match(r.getMessage())) is not None]
    assert len(starts) == 1, messages
    assert len(ends) == 1, messages
    start = START.match(starts[0])
    assert start is not None
    assert number(start[1]) == waiting, "the start line counts what waited"
    assert float(start[2]) == pytest.approx(waiting_mib, abs=0.051)
    assert start[3] == f"the broker {fresh_mosquitto.host}:{fresh_mosquitto.port}"
    end = END.search(ends[0])
    assert end is not None
    assert number(end[1]) == waiting, "every entry of the episode replayed; the live ones are not counted"
    assert messages.index(starts[0]) < messages.index(ends[0])
    assert progress, f"at least one progress line in a replay of {waiting} entries: {messages}"
    done = [number(m[1]) for _, m in progress]
    assert done == sorted(done)
    assert all(0 <= d <= waiting for d in done)
    for _, m in progress:
        assert number(m[2]) == waiting
        assert int(m[3]) == 100 * number(m[1]) // waiting
    times = [r.created for r, _ in progress]
    assert all(b - a >= EVERY_S * 0.9 for a, b in itertools.pairwise(times)), "rate-limited"
    state = publisher.replay.state()
    assert state is not None
    assert (state["active"], state["total"], state["done"]) == (False, waiting, waiting)
    await wait_until(
        lambda: ((subscriber.status or {}).get("replay") or {}).get("done") == waiting,
        20,
        "the retained status shows the finished replay",
        detail=lambda: subscriber.status,
    )
    assert subscriber.status is not None
    assert subscriber.status["replay"]["total"] == waiting
    assert subscriber.status["replay"]["active"] is False


async def test_influxdb_backlog_replay_is_reported(
    fresh_influxdb1: InfluxDB1, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO)
    database = unique_name("db")
    await asyncio.to_thread(fresh_influxdb1.create_database, database)
    config = InfluxConfig(version=1, url=fresh_influxdb1.url, database=database, timeout=2.0)
    sink = InfluxSink(
        config, "s", OutboxConfig(path=str(tmp_path / "o.sqlite")), backoff=Backoff(initial=0.05, cap=0.3)
    )
    sink.replay.every_s = 0.0  # a line after every write: the few large writes of this replay all show
    total = 3000
    await sink.start()
    try:
        await sink.submit(xy_batch(0), ORIGIN)
        await wait_until(lambda: sink.stats.written_points == 2, 15, "first points written")
        await asyncio.to_thread(fresh_influxdb1.stop)
        for i in range(1, total):
            await sink.submit(xy_batch(i), ORIGIN)
        await wait_until(lambda: not sink.influx_ok, 15, "the sink notices")
        waiting = sink.outbox.stats.entries
        assert waiting == total - 1
        await asyncio.to_thread(fresh_influxdb1.start)
        await wait_until(lambda: sink.outbox.stats.entries == 0 and not sink.replay.active, 60, "backlog written")
    finally:
        await sink.close()
    assert await asyncio.to_thread(telemetry_points, fresh_influxdb1, database) == 2 * total, "nothing lost"
    messages = [r.getMessage() for r in backlog_lines(caplog)]
    start = [m for m in (START.match(m) for m in messages) if m]
    end = [m for m in (END.search(m) for m in messages) if m]
    assert len(start) == 1, messages
    assert number(start[0][1]) == waiting
    assert start[0][3] == f"InfluxDB {sink.writer.target}"
    assert len(end) == 1, messages
    assert number(end[0][1]) == waiting
    done = [number(m[1]) for m in (PROGRESS.match(m) for m in messages) if m]
    assert done == sorted(done)
    assert all(d < waiting for d in done)
    assert messages[-1].startswith("backlog: replayed")


async def test_progress_text_and_rate_limit_with_a_clock(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    """The wording an operator reads, with exact figures: a clock the test moves, a real outbox."""
    caplog.set_level(logging.INFO)
    now = [100.0]
    outbox = Outbox(tmp_path / "o.sqlite", max_bytes=10**9, max_age=0)
    await outbox.open()
    try:
        seqs = [await outbox.append("t", b"x" * 100, 1) for _ in range(1000)]
        replay = BacklogReplay(outbox, "the broker b:1", every_s=10.0, clock=lambda: now[0])
        replay.begin()
        sent = [s for s in seqs if s is not None]
        for step, upto in ((5.0, 100), (10.0, 250), (12.0, 300), (30.0, 900)):
            now[0] = 100.0 + step
            chunk, sent = sent[: upto - replay.done], sent[upto - replay.done :]
            await outbox.remove(chunk)
            replay.delivered(chunk)
            replay.check()
        await outbox.append("t", b"live", 1)  # appended during the replay: behind it, not counted
        now[0] = 140.0
        await outbox.remove(sent)
        replay.delivered(sent)
        replay.check()
    finally:
        await outbox.close()
    messages = [r.getMessage() for r in backlog_lines(caplog)]
    assert messages == [
        "backlog: replaying 1,000 entries (0.1 MiB) to the broker b:1, oldest first; new batches queue behind them",
        "backlog: 250 of 1,000 sent (25 %), about 30 s left at 25/s; polling goes on, 0 new batches behind it",
        "backlog: 900 of 1,000 sent (90 %), about 3.3 s left at 30/s; polling goes on, 0 new batches behind it",
        "backlog: replayed 1,000 entries to the broker b:1 in 40 s (25/s)",
    ]
    assert replay.state() == {
        "active": False,
        "total": 1000,
        "done": 1000,
        "bytes": 1000 * 101,
        "started": replay.state()["started"],  # type: ignore[index]
        "elapsed_s": 40.0,
        "rate": 25.0,
    }


async def test_a_replay_cut_short_is_warned_and_the_rest_replayed_next(
    fresh_mosquitto: Mosquitto,
    subscriber: Subscriber,
    prefix: str,
    tmp_path: Path,
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.INFO)
    config = MqttConfig(host=fresh_mosquitto.host, port=fresh_mosquitto.port, topic_prefix=prefix, keepalive=5)
    outbox = OutboxConfig(path=str(tmp_path / "o.sqlite"), max_in_flight=5)  # a slow drain, to cut it
    publisher = MqttPublisher(config, "s", client_id=unique_name("agent"), outbox=outbox)
    publisher.backoff.initial, publisher.backoff.cap = 0.1, 0.5
    await publisher.start()
    total = 8000
    try:
        await wait_until(lambda: publisher.connected, 15, "first connect")
        await asyncio.to_thread(fresh_mosquitto.stop)
        await wait_until(lambda: not publisher.connected, 15, "publisher sees the broker gone")
        for i in range(total):
            await publisher.submit(batch(i), ORIGIN)
        first_total = publisher.outbox.stats.entries
        await asyncio.to_thread(fresh_mosquitto.start)
        await wait_until(lambda: publisher.replay.done >= 200, 30, "replay under way")
        await asyncio.to_thread(fresh_mosquitto.stop)
        await wait_until(lambda: not publisher.connected, 15, "broker gone mid-replay")
        assert not publisher.replay.active
        cut_at = publisher.replay.done
        assert 200 <= cut_at < first_total, "the broker went away before the replay ended"
        await wait_until(
            lambda: publisher.outbox.stats.removed == publisher.stats.published, 15, "acks received are applied"
        )
        left = publisher.outbox.stats.entries
        await asyncio.to_thread(fresh_mosquitto.start)
        await wait_until(
            lambda: len(subscriber.samples) == total and publisher.outbox.stats.entries == 0,
            90,
            "everything delivered after the second start",
            detail=lambda: (len(subscriber.samples), publisher.outbox.stats, publisher.replay.state()),
        )
        await wait_until(lambda: not publisher.replay.active, 15, "second episode over")
    finally:
        await publisher.close()
    assert set(subscriber.samples) == {("m1", "x", T0 + i) for i in range(total)}, "nothing lost"
    records = backlog_lines(caplog)
    warnings = [r.getMessage() for r in records if r.levelno == logging.WARNING]
    assert len(warnings) == 1, warnings
    assert f"interrupted after {cut_at:,} of {first_total:,} entries" in warnings[0]
    assert "the broker connection was lost" in warnings[0]
    starts = [number(m[1]) for r in records if (m := START.match(r.getMessage()))]
    ends = [number(m[1]) for r in records if (m := END.search(r.getMessage()))]
    assert starts == [first_total, left], "the second episode replays what was left"
    assert ends == [left]
    assert publisher.replay.episodes == 2
