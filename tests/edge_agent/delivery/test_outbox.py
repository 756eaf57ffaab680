"""The outbox on its own: order, durability across a kill -9, bounds, corruption, a full disk.

Real SQLite files in a temporary directory; the process that is killed is a real subprocess.
"""

from __future__ import annotations

import asyncio
import logging
import signal
import sqlite3
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

from edge_agent.core.errors import ConfigError
from edge_agent.delivery.outbox import Outbox
from tests.helpers.waiting import wait_until


def make(path: Path, **options: object) -> Outbox:
    values: dict[str, object] = {"max_bytes": 10_000_000, "max_age": 0.0}
    values.update(options)
    return Outbox(path, **values)  # type: ignore[arg-type]


async def test_entries_come_back_in_order_and_leave_when_removed(tmp_path: Path) -> None:
    box = make(tmp_path / "o.sqlite")
    await box.open()
    try:
        seqs = [await box.append(f"t/{i}", b"x" * i, i) for i in range(1, 11)]
        assert seqs == sorted(s for s in seqs if s is not None)  # no append was dropped, in order
        first = await box.read_after(0, 4)
        assert [e.topic for e in first] == ["t/1", "t/2", "t/3", "t/4"]
        rest = await box.read_after(first[-1].seq, 100)
        assert [e.topic for e in rest] == [f"t/{i}" for i in range(5, 11)]
        await box.remove(e.seq for e in first)
        assert box.stats.entries == 6
        assert box.stats.samples == sum(range(5, 11))
        assert [e.topic for e in await box.read_after(0, 100)] == [e.topic for e in rest]
    finally:
        await box.close()


async def test_sequence_numbers_are_never_reused_after_a_restart(tmp_path: Path) -> None:
    path = tmp_path / "o.sqlite"
    box = make(path)
    await box.open()
    last = await box.append("t", b"a", 1)
    assert last is not None
    await box.remove([last])
    await box.close()
    box = make(path)
    await box.open()
    try:
        again = await box.append("t", b"b", 1)
        assert again is not None
        assert again > last
    finally:
        await box.close()


WRITER = textwrap.dedent(
    """
    import asyncio, sys
    from edge_agent.delivery.outbox import Outbox

    async def main() -> None:
        box = Outbox(sys.argv[1], max_bytes=10**9, max_age=0, synchronous=sys.argv[2])
        await box.open()
        n = 0
        while True:
            await box.append("t", n.to_bytes(8, "big"), 1)
            n += 1
            print(n, flush=True)

    asyncio.run(main())
    """
)


@pytest.mark.parametrize("synchronous", ["normal", "full"])
async def test_every_acknowledged_append_survives_kill_9(tmp_path: Path, synchronous: str) -> None:
    """A writer appends as fast as it can and prints each count after append returned; kill -9 it."""
    path = tmp_path / "o.sqlite"
    process = await asyncio.create_subprocess_exec(
        sys.executable, "-c", WRITER, str(path), synchronous, stdout=subprocess.PIPE
    )
    assert process.stdout is not None
    confirmed = 0
    async with asyncio.timeout(30):
        while confirmed < 300:
            line = await process.stdout.readline()
            assert line, "the writer died"
            confirmed = int(line)
    process.send_signal(signal.SIGKILL)
    rest = await process.stdout.read()
    await process.wait()
    confirmed = max([confirmed, *(int(x) for x in rest.split())])
    box = make(path)
    await box.open()
    try:
        entries = await box.read_after(0, 10**6)
    finally:
        await box.close()
    values = [int.from_bytes(e.payload, "big") for e in entries]
    assert values[:confirmed] == list(range(confirmed)), "every append that returned is on disk, in order"
    assert len(values) in (confirmed, confirmed + 1), "at most the append in progress is extra"


async def test_byte_bound_drops_the_oldest_counts_and_logs_once(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO)
    box = make(tmp_path / "o.sqlite", max_bytes=1000)
    await box.open()
    try:
        for i in range(50):
            await box.append("t", bytes([i]) * 99, 3)  # 100 bytes with the topic
        assert box.stats.bytes <= 1000
        assert box.stats.entries == 10
        assert box.stats.dropped_batches == 40
        assert box.stats.dropped_samples == 120
        assert [e.payload[0] for e in await box.read_after(0, 100)] == list(range(40, 50)), "the newest stay"
        errors = [r for r in caplog.records if r.levelno == logging.ERROR]
        assert len(errors) == 1, "one ERROR per episode, not one per drop"
        assert "DATA LOST" in errors[0].getMessage()
        assert "outbox.max_bytes" in errors[0].getMessage()
        await box.remove(e.seq for e in await box.read_after(0, 5))
        assert any("no longer dropping" in r.getMessage() for r in caplog.records)
    finally:
        await box.close()
    reopened = make(tmp_path / "o.sqlite", max_bytes=1000)
    await reopened.open()
    try:
        assert (reopened.stats.dropped_batches, reopened.stats.dropped_samples) == (40, 120), "kept in the file"
    finally:
        await reopened.close()


async def test_entries_in_flight_are_never_dropped(tmp_path: Path) -> None:
    box = make(tmp_path / "o.sqlite", max_bytes=500)
    await box.open()
    try:
        for i in range(5):
            await box.append("t", bytes([i]) * 99, 1)
        pinned = await box.read_after(0, 2, pin=True)
        for i in range(5, 10):
            await box.append("t", bytes([i]) * 99, 1)
        left = [e.payload[0] for e in await box.read_after(0, 100)]
        assert left[:2] == [0, 1], "pinned (in-flight) entries stay"
        assert left[2:] == [7, 8, 9]
        assert box.stats.dropped_batches == 5
        assert pinned[-1].seq == box.pinned_upto
    finally:
        await box.close()


async def test_age_bound_drops_old_entries(tmp_path: Path) -> None:
    now = [1_000_000_000_000]
    box = Outbox(tmp_path / "o.sqlite", max_bytes=10**6, max_age=60, clock_ns=lambda: now[0])
    await box.open()
    try:
        await box.append("t", b"old", 2)
        now[0] += 61 * 10**9
        await box.append("t", b"new", 2)
        await box.enforce_age()
        assert [e.payload for e in await box.read_after(0, 10)] == [b"new"]
        assert (box.stats.dropped_batches, box.stats.dropped_samples) == (1, 2)
    finally:
        await box.close()


async def test_corrupt_file_is_moved_aside_and_a_fresh_one_started(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    path = tmp_path / "o.sqlite"
    path.write_bytes(b"this is not an sqlite database, it is a plain file " * 200)
    box = make(path)
    await box.open()
    try:
        assert await box.append("t", b"fresh", 1) is not None
        assert box.stats.corrupt_files_moved == 1
    finally:
        await box.close()
    aside = list(tmp_path.glob("o.sqlite.corrupt-*"))
    assert len(aside) == 1
    assert aside[0].read_bytes().startswith(b"this is not an sqlite")
    [error] = [r for r in caplog.records if r.levelno == logging.ERROR]
    assert "moved it aside" in error.getMessage()
    assert str(aside[0]) in error.getMessage()


async def test_torn_database_page_is_detected(tmp_path: Path) -> None:
    path = tmp_path / "o.sqlite"
    box = make(path)
    await box.open()
    for i in range(200):
        await box.append("t", bytes([i % 256]) * 500, 1)
    await box.close()
    data = bytearray(path.read_bytes())
    for offset in range(4096, len(data), 4096):  # scribble over every page but the header page
        data[offset : offset + 16] = b"\xff" * 16  # the b-tree page header
    path.write_bytes(bytes(data))
    box = make(path)
    await box.open()
    try:
        assert box.stats.corrupt_files_moved == 1
        assert box.stats.entries == 0
    finally:
        await box.close()


async def test_disk_full_drops_oldest_and_keeps_accepting(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    """SQLite's max_page_count gives the same SQLITE_FULL error a full disk does."""
    box = make(tmp_path / "o.sqlite", max_page_count=40)
    await box.open()
    try:
        stored = 0
        for i in range(400):
            if await box.append("t", bytes([i % 256]) * 1000, 2) is not None:
                stored += 1
        assert stored >= 390, "room is made by dropping old batches, so new ones are still stored"
        assert box.stats.dropped_batches > 0
        assert box.stats.entries + box.stats.dropped_batches == 400
        assert box.stats.dropped_samples == 2 * box.stats.dropped_batches
        assert box.stats.appended_samples == box.stats.samples + box.stats.dropped_samples, "every batch accounted"
        newest = await box.read_after(0, 1000)
        assert newest[-1].payload[0] == 399 % 256
        errors = [r for r in caplog.records if r.levelno == logging.ERROR]
        assert len(errors) == 1
        assert "disk is full" in errors[0].getMessage()
    finally:
        await box.close()


async def test_unwritable_location_is_a_config_error_naming_the_key(tmp_path: Path) -> None:
    blocker = tmp_path / "not-a-directory"
    blocker.write_text("a file where the outbox directory should be")
    box = make(blocker / "o.sqlite")
    with pytest.raises(ConfigError) as info:
        await box.open()
    await box.close()
    [problem] = info.value.problems
    assert problem.startswith("outbox.path: cannot open the outbox")
    assert "Fix:" in problem


async def test_a_second_process_on_the_same_outbox_is_refused(tmp_path: Path) -> None:
    first = make(tmp_path / "o.sqlite")
    await first.open()
    try:
        second = make(tmp_path / "o.sqlite")
        with pytest.raises(ConfigError, match="in use by another running agent"):
            await second.open()
        await second.close()
    finally:
        await first.close()
    third = make(tmp_path / "o.sqlite")
    await third.open()  # the lock went with the first
    await third.close()


OLD_SCHEMA = """
CREATE TABLE entries (seq INTEGER PRIMARY KEY AUTOINCREMENT, topic TEXT NOT NULL, payload BLOB NOT NULL,
                      samples INTEGER NOT NULL, created_ns INTEGER NOT NULL);
CREATE TABLE counters (name TEXT PRIMARY KEY, value INTEGER NOT NULL);
"""


async def test_an_outbox_file_from_before_the_retain_flag_keeps_its_entries_and_counters(tmp_path: Path) -> None:
    path = tmp_path / "old.sqlite"
    db = sqlite3.connect(path)
    db.executescript(OLD_SCHEMA)
    now = time.time_ns()
    db.executemany(
        "INSERT INTO entries (topic, payload, samples, created_ns) VALUES (?, ?, ?, ?)",
        [("e/s/a/l/m/telemetry", b"one", 3, now), ("e/s/a/l/m/alerts", b"two", 0, now)],
    )
    db.executemany("INSERT INTO counters VALUES (?, ?)", [("appended_batches", 9), ("dropped_batches", 2)])
    db.commit()
    db.close()

    box = make(path)
    await box.open()
    try:
        old = await box.read_after(0, 10)
        assert [(e.topic, e.payload, e.samples, e.retain) for e in old] == [
            ("e/s/a/l/m/telemetry", b"one", 3, False),
            ("e/s/a/l/m/alerts", b"two", 0, False),
        ]
        assert (box.stats.entries, box.stats.appended_batches, box.stats.dropped_batches) == (2, 9, 2)
        seq = await box.append("e/s/a/l/m/alerts", b"three", 0, retain=True)
        new = await box.read_after(old[-1].seq, 10)
        assert [(e.seq, e.payload, e.retain) for e in new] == [(seq, b"three", True)]
    finally:
        await box.close()
    box = make(path)  # opened again: already migrated, nothing changes
    await box.open()
    try:
        assert [e.retain for e in await box.read_after(0, 10)] == [False, False, True]
    finally:
        await box.close()


def file_and_wal_bytes(path: Path) -> int:
    return sum(p.stat().st_size for p in (path, path.with_name(path.name + "-wal")) if p.exists())


async def test_the_file_shrinks_back_after_a_backlog_drains(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    """An outage's backlog grows the file; once delivered, the space goes back to the disk, entries intact."""
    caplog.set_level(logging.INFO, logger="edge_agent.delivery.outbox")
    path = tmp_path / "o.sqlite"
    box = make(path, max_bytes=100_000_000)
    await box.open()
    try:
        payload = bytes(range(256)) * 16  # 4 KiB, a large telemetry batch
        seqs = [await box.append("t", payload, 50) for _ in range(5000)]  # a 20 MiB backlog
        assert file_and_wal_bytes(path) > 20 * 1024 * 1024
        acked = [s for s in seqs if s is not None]
        await box.remove(acked[:-10])  # the backlog is delivered; the ten newest still wait
        await box.remove([])  # nothing acked: no work, no tidy-up either

        async def given_back() -> bool:
            if file_and_wal_bytes(path) <= 4 * 1024 * 1024:
                return True
            live = await box.append("t", payload, 50)  # live data keeps flowing, and is acked
            assert live is not None
            await box.remove([live])
            return False

        await wait_until(given_back, 30, "the freed pages to go back to the file system")
        waiting = await box.read_after(0, 100)
        assert [e.seq for e in waiting] == acked[-10:]
        assert all(e.payload == payload for e in waiting)
        assert any("backlog drained" in r.getMessage() for r in caplog.records)
    finally:
        await box.close()


async def test_an_empty_outbox_file_from_before_auto_vacuum_is_converted(tmp_path: Path) -> None:
    path = tmp_path / "old.sqlite"
    db = sqlite3.connect(path)
    db.executescript(OLD_SCHEMA)
    db.executemany("INSERT INTO counters VALUES (?, ?)", [("appended_batches", 9), ("dropped_batches", 2)])
    db.commit()
    assert db.execute("PRAGMA auto_vacuum").fetchone() == (0,)
    db.close()

    box = make(path)
    await box.open()
    try:
        assert (box.stats.appended_batches, box.stats.dropped_batches) == (9, 2), "counters kept"
        assert await box.append("t", b"x", 1) is not None
    finally:
        await box.close()
    db = sqlite3.connect(path)
    try:
        assert db.execute("PRAGMA auto_vacuum").fetchone() == (2,), "INCREMENTAL"
    finally:
        db.close()
