"""The durable outbox: every batch is on disk before it is sent, and leaves only once it is acknowledged.

Why a file and not a queue in memory: the agent must not lose a sample that was read when the
broker or database is away for hours, nor when the agent itself is killed (``kill -9``, a power
cut of the line PC short of the disk cache, an OOM kill). So a sink appends the already encoded
payload (topic + bytes + a sequence number) here *before* it publishes, and removes it only after
the broker's PUBACK (MQTT) or InfluxDB's 204 (direct sink). A crash in between means the entry is
sent again after the restart; every point carries its own identity and timestamp, so the second
copy overwrites the first in InfluxDB (docs/delivery.md: at least once + idempotent points =
exactly once in effect).

Storage: one SQLite file in WAL mode, used from one worker thread (stdlib ``sqlite3`` blocks, so it
never runs in the event loop). ``synchronous=NORMAL`` (default) makes every committed append
survive a crash of the process, because the WAL is in the kernel's page cache the moment the commit
returns; ``synchronous=FULL`` also fsyncs the WAL on every commit, so an append survives a power cut
of the whole box, at a cost measured in docs/delivery.md.

Bounds: the payload bytes held are capped by ``max_bytes`` and each entry's age by ``max_age``; at a
bound the oldest entries not in flight are dropped and counted (``edge_agent.delivery.outbox_bounds``),
and a full or failing disk never makes ``append`` raise: polling goes on. A reserve file beside the
outbox gives a full disk the room to drop the oldest entries rather than the new ones
(``edge_agent.delivery.outbox_reserve``). A file that is not a readable SQLite database at start
is moved aside and a fresh outbox started (``edge_agent.delivery.outbox_file``). After a backlog has
drained, the file's free pages and the cached memory are given back (``edge_agent.delivery.outbox_space``).
The page cache itself is capped: the outbox reads and writes at the two ends of one B-tree, so a few
hundred pages hold everything hot (bench/delivery.py measures the drain with it).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import sqlite3
import time
from collections.abc import Callable, Iterable, Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Literal, TextIO, TypeVar

from edge_agent.core.errors import ConfigError
from edge_agent.delivery import outbox_file
from edge_agent.delivery.outbox_bounds import Bounds, Dropped
from edge_agent.delivery.outbox_file import Entry, OutboxStats, default_outbox_path, is_disk_full, read_counters
from edge_agent.delivery.outbox_reserve import PAGE_BYTES, DiskReserve, WalSizing, checkpoint_truncate, wal_sizing
from edge_agent.delivery.outbox_space import KEEP_FREE_PAGES, SpaceReclaimer, convert_to_incremental_vacuum

__all__ = ["KEEP_FREE_PAGES", "Entry", "Outbox", "OutboxStats", "default_outbox_path", "read_counters"]

log = logging.getLogger(__name__)

T = TypeVar("T")

# Entries deleted per transaction on a full disk (each step's WAL must fit in the room there is).
_FULL_DISK_DELETE_CHUNK = 32


class Outbox:
    """A bounded, durable FIFO of encoded batches in one SQLite file.

    ``await open()`` before use and ``await close()`` after. All SQLite work runs in one dedicated
    worker thread (SQLite connections belong to one thread, and serialising the work there keeps
    the order of appends). ``pinned_upto`` is set by the sink: entries with ``seq`` at or below it
    are in flight and never dropped.
    """

    def __init__(
        self,
        path: str | Path,
        *,
        max_bytes: int,
        max_age: float,
        synchronous: Literal["normal", "full"] = "normal",
        max_page_count: int | None = None,
        clock_ns: Callable[[], int] = time.time_ns,
    ) -> None:
        self.path = Path(path)
        self.max_bytes = max_bytes
        self.max_age = max_age
        self.synchronous = synchronous
        self.stats = OutboxStats()
        self.pinned_upto = 0
        self.first_seq: int | None = None
        """``seq`` of the oldest entry waiting, None when empty (a backlog replay ends once it passes its mark)."""
        self.last_seq = 0
        """``seq`` of the newest entry appended (0 before the first); marks where a backlog replay ends."""
        self._max_page_count = max_page_count  # tests simulate a full disk with it
        self._clock_ns = clock_ns
        self._executor: ThreadPoolExecutor | None = None
        self._db: sqlite3.Connection | None = None
        self._lock_handle: TextIO | None = None
        self.bounds = Bounds(
            self.stats, max_bytes=max_bytes, max_age=max_age, clock_ns=clock_ns, refresh_oldest=self._refresh_oldest
        )
        self._sizing = WalSizing(0, 1000, 16 * 1024 * 1024)  # set from the file system at open
        self._reserve = DiskReserve(self.path, 0)
        self._space = SpaceReclaimer(self.path, self._reserve)

    # ------------------------------------------------------------------ lifecycle
    async def open(self) -> None:
        """Open (or create) the file; a corrupt file is moved aside and a fresh one started."""
        if self._executor is None:
            self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="outbox")
        await self._run(self._open_sync)
        if self.stats.entries:
            log.info(
                "outbox: %s holds %d batch(es) (%d samples, %d bytes) from before; sending them first",
                self.path,
                self.stats.entries,
                self.stats.samples,
                self.stats.bytes,
            )

    async def close(self) -> None:
        """Close the file and stop the worker thread. Idempotent."""
        executor, self._executor = self._executor, None
        if executor is None:
            return
        try:
            await asyncio.get_running_loop().run_in_executor(executor, self._close_sync)
        finally:
            executor.shutdown(wait=False)

    # ------------------------------------------------------------------ API
    async def append(self, topic: str, payload: bytes, samples: int, *, retain: bool = False) -> int | None:
        """Store one batch durably; its ``seq``, or None when it had to be dropped (counted, logged).

        ``retain`` is stored with the entry: the MQTT publisher sends it as the topic's retained
        message, so a state kept this way (the machine's current alert) is durable and in order.
        """
        return await self._run(lambda: self._append_sync(topic, payload, samples, retain))

    async def read_after(self, seq: int, limit: int, *, pin: bool = False) -> list[Entry]:
        """Up to ``limit`` entries with a sequence number above ``seq``, oldest first.

        ``pin=True`` marks them in flight in the same step (``pinned_upto``), so a drop at the bound
        cannot delete an entry between this read and its hand-over to the network.
        """
        return await self._run(lambda: self._read_sync(seq, limit, pin))

    async def remove(self, seqs: Iterable[int]) -> None:
        """Delete acknowledged entries (unknown ones, e.g. already dropped, are ignored)."""
        wanted = sorted(set(seqs))
        if wanted:
            await self._run(lambda: self._remove_sync(wanted))

    async def enforce_age(self) -> None:
        """Drop entries older than ``max_age`` now (``append`` also does it, at most once a second)."""
        await self._run(self._drop_expired_sync)

    # ------------------------------------------------------------------ worker thread
    async def _run(self, func: Callable[[], T]) -> T:
        if self._executor is None:
            raise RuntimeError("outbox is not open: call await outbox.open() first")
        return await asyncio.get_running_loop().run_in_executor(self._executor, func)

    def _open_sync(self) -> None:
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            self._lock_handle = outbox_file.lock(self.path)
            self._sizing = wal_sizing(self.path.parent)
            self._reserve.size = self._sizing.reserve_bytes
            db = self._connect()
            problem = outbox_file.quick_check(db)
        except (OSError, sqlite3.OperationalError) as exc:
            self._unlock()
            if not outbox_file.is_unusable_location(exc):
                raise
            raise ConfigError(
                "configuration",
                [
                    f"outbox.path: cannot open the outbox {self.path}: {exc}. Fix: point outbox.path at a "
                    "writable directory on persistent storage (or give the agent's user write access)"
                ],
            ) from exc
        except sqlite3.DatabaseError as exc:
            problem = str(exc)
            db = None
        if problem is not None:
            if db is not None:
                db.close()
            outbox_file.move_aside(self.path, problem)
            self.stats.corrupt_files_moved += 1
            db = self._connect()
        assert db is not None
        self._db = db
        self._load_stats(db)
        convert_to_incremental_vacuum(db, self.path, self.stats.entries)
        self._reserve.ensure()

    def _connect(self) -> sqlite3.Connection:
        return outbox_file.connect(
            self.path,
            self.synchronous,
            self._max_page_count,
            wal_autocheckpoint_pages=self._sizing.autocheckpoint_pages,
            journal_size_limit=self._sizing.journal_size_limit,
        )

    def _load_stats(self, db: sqlite3.Connection) -> None:
        count, size, samples, oldest, first, last = db.execute(
            "SELECT COUNT(*), COALESCE(SUM(LENGTH(payload) + LENGTH(topic)), 0), COALESCE(SUM(samples), 0), "
            "MIN(created_ns), MIN(seq), COALESCE(MAX(seq), 0) FROM entries"
        ).fetchone()
        self.stats.entries, self.stats.bytes, self.stats.samples = int(count), int(size), int(samples)
        self.stats.oldest_created_ns = oldest
        self.first_seq, self.last_seq = first, int(last)
        counters = dict(db.execute("SELECT name, value FROM counters").fetchall())
        self.stats.dropped_batches = int(counters.get("dropped_batches", 0))
        self.stats.dropped_samples = int(counters.get("dropped_samples", 0))
        self.stats.appended_batches = int(counters.get("appended_batches", 0))
        self.stats.appended_samples = int(counters.get("appended_samples", 0))

    def _close_sync(self) -> None:
        db, self._db = self._db, None
        if db is not None:
            with contextlib.suppress(sqlite3.Error):
                db.execute("PRAGMA wal_checkpoint(TRUNCATE)")
            db.close()
        self._unlock()

    def _unlock(self) -> None:
        handle, self._lock_handle = self._lock_handle, None
        if handle is not None:
            handle.close()  # releases the flock

    def _require_db(self) -> sqlite3.Connection:
        if self._db is None:
            raise RuntimeError("outbox is closed")
        return self._db

    def _append_sync(self, topic: str, payload: bytes, samples: int, retain: bool = False) -> int | None:
        db = self._require_db()
        size = len(payload) + len(topic.encode())
        now = self._clock_ns()
        if self.bounds.age_check_due():
            self._drop_expired_sync()
        for attempt in range(2):
            dropped: Dropped | None = None
            try:
                with outbox_file.transaction(db):
                    seq = db.execute(
                        "INSERT INTO entries (topic, payload, samples, created_ns, retain) VALUES (?, ?, ?, ?, ?)",
                        (topic, payload, samples, now, int(retain)),
                    ).lastrowid
                    db.executemany(outbox_file.ADD_COUNTER, [("appended_batches", 1), ("appended_samples", samples)])
                    excess = self.stats.bytes + size - self.bounds.limit
                    if excess > 0:
                        dropped = self.bounds.drop_oldest(db, excess, self.pinned_upto)
            except sqlite3.Error as exc:  # disk full, I/O error, a file damaged while running: never raise
                if not is_disk_full(exc) or attempt == 1:
                    self.bounds.lose_new(db, samples, exc)
                    return None
                self._relieve_full_disk(db, exc)
                continue
            if dropped is not None:
                self.bounds.record(dropped, self._bound_reached())
            self.stats.entries += 1
            self.stats.bytes += size
            self.stats.samples += samples
            self.stats.appended += 1
            self.stats.appended_batches += 1
            self.stats.appended_samples += samples
            self._space.held(self.stats.bytes)
            if self.stats.oldest_created_ns is None:
                self.stats.oldest_created_ns = now
            if seq is not None:
                self.last_seq = int(seq)
                if self.first_seq is None:
                    self.first_seq = self.last_seq
            return int(seq) if seq is not None else None
        return None  # pragma: no cover - the loop always returns

    def _bound_reached(self) -> str:
        if self.bounds.disk_cap is not None and self.bounds.disk_cap < self.max_bytes:
            return "the disk is full (what fitted on it is the outbox's bound until it has drained)"
        return "the outbox reached outbox.max_bytes"

    def _relieve_full_disk(self, db: sqlite3.Connection, exc: sqlite3.Error) -> None:
        """Disk full: free the reserve, empty the WAL into the file, drop the oldest, empty the WAL again."""
        self._reserve.release()
        checkpoint_truncate(db)
        if self.bounds.make_room(db, exc, self.pinned_upto, max(PAGE_BYTES, self._reserve.size // 4)):
            checkpoint_truncate(db)
        self._space.after_disk_full()

    def _drop_expired_sync(self) -> None:
        self.bounds.drop_expired(self._require_db(), self.pinned_upto)

    def _refresh_oldest(self) -> None:
        db = self._require_db()
        # The oldest by sequence (an index lookup): MIN(created_ns) would scan a long backlog at every ack.
        row = db.execute("SELECT seq, created_ns FROM entries ORDER BY seq LIMIT 1").fetchone()
        self.first_seq, self.stats.oldest_created_ns = (int(row[0]), row[1]) if row else (None, None)

    def _read_sync(self, seq: int, limit: int, pin: bool) -> list[Entry]:
        db = self._require_db()
        rows = db.execute(
            "SELECT seq, topic, payload, samples, created_ns, retain FROM entries WHERE seq > ? ORDER BY seq LIMIT ?",
            (seq, limit),
        ).fetchall()
        entries = [Entry(int(s), str(t), bytes(p), int(n), int(c), bool(r)) for s, t, p, n, c, r in rows]
        if pin and entries:
            self.pinned_upto = max(self.pinned_upto, entries[-1].seq)
        return entries

    def _remove_sync(self, seqs: Sequence[int]) -> None:
        db = self._require_db()
        try:
            removed, samples, freed = self._delete_sync(db, seqs)
        except sqlite3.Error as exc:
            if not is_disk_full(exc):
                raise
            removed, samples, freed = self._delete_on_full_disk(db, seqs)
        self.stats.entries -= removed
        self.stats.samples -= samples
        self.stats.bytes -= freed
        self.stats.removed += removed
        if removed:
            self._refresh_oldest()
        self.bounds.maybe_end_episode()
        self._space.after_removal(db, self.stats.bytes)

    def _delete_on_full_disk(self, db: sqlite3.Connection, seqs: Sequence[int]) -> tuple[int, int, int]:
        """Even a DELETE needs room: it writes every page it touches to the WAL first.

        So the reserve is freed and the WAL emptied, and the entries are deleted a few at a time,
        the WAL emptied into the file after each step (pages the file already has: it does not grow).
        """
        self._reserve.release()
        self._space.after_disk_full()
        removed = samples = freed = 0
        for start in range(0, len(seqs), _FULL_DISK_DELETE_CHUNK):
            checkpoint_truncate(db)
            counts = self._delete_sync(db, seqs[start : start + _FULL_DISK_DELETE_CHUNK])
            removed, samples, freed = removed + counts[0], samples + counts[1], freed + counts[2]
        checkpoint_truncate(db)
        return removed, samples, freed

    @staticmethod
    def _delete_sync(db: sqlite3.Connection, seqs: Sequence[int]) -> tuple[int, int, int]:
        """Delete the entries in one transaction: (batches, samples, bytes) that were there."""
        removed = samples = freed = 0
        with outbox_file.transaction(db):
            for chunk_start in range(0, len(seqs), 500):
                chunk = seqs[chunk_start : chunk_start + 500]
                marks = ",".join("?" * len(chunk))  # only '?' placeholders are formatted into the SQL
                where = f"FROM entries WHERE seq IN ({marks})"
                totals = (
                    "SELECT COUNT(*), COALESCE(SUM(samples), 0), COALESCE(SUM(LENGTH(payload) + LENGTH(topic)), 0) "
                )
                count, chunk_samples, chunk_bytes = db.execute(totals + where, chunk).fetchone()
                db.execute("DELETE " + where, chunk)
                removed += int(count)
                samples += int(chunk_samples)
                freed += int(chunk_bytes)
        return removed, samples, freed
