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

Bounds (every loss counted, memory and disk bounded): the payload bytes held are capped by ``max_bytes`` and each
entry's age by ``max_age``. At a bound the *oldest* entries that are not in flight are deleted, and
counted (batches and samples); the first drop of an episode is logged at ERROR, the end of the
episode at INFO, and the counters are kept in the file so they survive restarts. An entry already
handed to the network (in flight) is never dropped: it may still arrive, and a drop counter that
over-counts would make the count useless. The overshoot is therefore at most the in-flight window.

Disk full while appending (SQLite ``SQLITE_FULL``): the oldest droppable entries are deleted to make
room, counted as drops, and the append is retried; if even that fails the new batch is the one
dropped and counted. ``append`` never raises for a full or failing disk: polling goes on.

A file that is not a readable SQLite database at start (torn by a dying disk, overwritten by
mistake) is renamed to ``<path>.corrupt-<UTC time>`` with an ERROR that says so, and a fresh outbox
is started: the agent keeps working and the old file stays for a post-mortem.

After a backlog (memory and disk stay bounded, and go back down): a long
outage grows the file and SQLite's page cache, and SQLite on its own never gives either back.
Files are created with ``auto_vacuum=INCREMENTAL`` (an older file is converted at the first start
that finds it empty), and once a backlog of at least ``_TIDY_BACKLOG_BYTES`` has drained, the
worker thread hands the free pages back to the file system a few MiB at a time, truncates the WAL,
releases SQLite's page cache (``shrink_memory``) and the heap's free pages (``malloc_trim``). The
page cache itself is capped at ``_CACHE_KIB``: the outbox reads and writes at the two ends of one
B-tree, so a few hundred pages hold everything hot (bench/delivery.py measures the drain with it).
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import fcntl
import logging
import os
import sqlite3
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Literal, TextIO, TypeVar

from edge_agent.core import memory
from edge_agent.core.errors import ConfigError

__all__ = ["KEEP_FREE_PAGES", "Entry", "Outbox", "OutboxStats", "default_outbox_path", "read_counters"]

log = logging.getLogger(__name__)

T = TypeVar("T")

_SCHEMA = """
CREATE TABLE IF NOT EXISTS entries (
    seq INTEGER PRIMARY KEY AUTOINCREMENT,
    topic TEXT NOT NULL,
    payload BLOB NOT NULL,
    samples INTEGER NOT NULL,
    created_ns INTEGER NOT NULL,
    retain INTEGER NOT NULL DEFAULT 0
);
CREATE TABLE IF NOT EXISTS counters (
    name TEXT PRIMARY KEY,
    value INTEGER NOT NULL
);
"""
# Counters live in the file, in the same transaction as the change they count, so that after any
# crash ``appended == delivered + dropped + waiting`` still holds (the chaos tests check it).
_ADD = "INSERT INTO counters (name, value) VALUES (?, ?) ON CONFLICT(name) DO UPDATE SET value = value + excluded.value"
_AGE_CHECK_EVERY_S = 1.0
# Fraction of the byte bound under which a drop episode is over (hysteresis, so a full outbox
# hovering at its bound does not log an ERROR for every single batch).
_EPISODE_END_FRACTION = 0.9
_DISK_FULL_DROP_FRACTION = 0.1
# SQLite's page cache for the outbox connection (its default is 2,000 KiB, which a backlog fills and keeps).
_CACHE_KIB = 512
# A backlog this large (payload bytes) has grown the file and the cache: tidy up once it is down to
# _TIDY_DRAINED_BYTES (a live window in flight stays far below it).
_TIDY_BACKLOG_BYTES = 4 * 1024 * 1024
_TIDY_DRAINED_BYTES = 1024 * 1024
_TIDY_EVERY_S = 1.0
# Pages handed back per step (8 MiB of 4 KiB pages: tens of ms of the worker thread, so appends wait
# little), and free pages kept for the next batches instead of growing the file again at once.
_VACUUM_PAGES_PER_STEP = 2048
KEEP_FREE_PAGES = 256


def default_outbox_path(client_id: str) -> Path:
    """Where the outbox lives when ``outbox.path`` is not set.

    ``$STATE_DIRECTORY`` when systemd gives the service one (``StateDirectory=edge-agent``), else
    ``$XDG_STATE_HOME/edge-agent`` (``~/.local/state/edge-agent``): a place that survives reboots,
    unlike /tmp, and that the agent's user can write.
    """
    state = os.environ.get("STATE_DIRECTORY")
    if state:
        base = Path(state.split(":")[0])
    else:
        base = Path(os.environ.get("XDG_STATE_HOME") or Path.home() / ".local" / "state") / "edge-agent"
    return base / f"outbox-{client_id}.sqlite"


def read_counters(path: str | Path) -> dict[str, int]:
    """The counters of an outbox file, opened read-only beside a running agent (WAL allows it).

    For status tools, tests and benchmarks: ``appended_batches``/``appended_samples``,
    ``dropped_batches``/``dropped_samples`` (since the file was created) and ``waiting`` /
    ``waiting_samples`` (now). All zero while the file does not exist yet.
    """
    names = ("appended_batches", "appended_samples", "dropped_batches", "dropped_samples")
    result = dict.fromkeys((*names, "waiting", "waiting_samples"), 0)
    if not Path(path).exists():
        return result
    db = sqlite3.connect(f"file:{path}?mode=ro", uri=True, timeout=5)
    try:
        for name, value in db.execute("SELECT name, value FROM counters").fetchall():
            if name in names:
                result[name] = int(value)
        waiting, samples = db.execute("SELECT COUNT(*), COALESCE(SUM(samples), 0) FROM entries").fetchone()
        result["waiting"], result["waiting_samples"] = int(waiting), int(samples)
    except sqlite3.OperationalError as exc:
        if "no such table" not in str(exc):
            raise
    finally:
        db.close()
    return result


@dataclass(frozen=True, slots=True)
class Entry:
    """One stored batch: ``seq`` orders entries for ever (never reused, also across restarts)."""

    seq: int
    topic: str
    payload: bytes
    samples: int
    created_ns: int
    retain: bool = False
    """Publish as the topic's retained message (the current alert state of a machine)."""


@dataclass
class OutboxStats:
    """What the outbox holds and what it had to give up. Counters since the file was created.

    ``entries``/``bytes``/``samples`` are what waits now (payload + topic bytes, not the file size);
    ``appended``/``removed`` count this process's appends and acknowledged removals;
    ``appended_batches``/``appended_samples`` count every append since the file was created;
    ``dropped_batches``/``dropped_samples`` count data given up at a bound or on a full disk
    (kept in the file, so they survive restarts); ``drop_episodes`` counts this process's ERRORs.
    """

    entries: int = 0
    bytes: int = 0
    samples: int = 0
    appended: int = 0
    removed: int = 0
    appended_batches: int = 0
    appended_samples: int = 0
    dropped_batches: int = 0
    dropped_samples: int = 0
    drop_episodes: int = 0
    append_errors: int = 0
    oldest_created_ns: int | None = None
    corrupt_files_moved: int = 0


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
        self._dropping = False
        self._episode_batches = 0
        self._episode_samples = 0
        self._last_age_check = 0.0
        self._tidy_due = False
        self._last_tidy = 0.0

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

    def _connect(self) -> sqlite3.Connection:
        db = sqlite3.connect(self.path, isolation_level=None, check_same_thread=False)
        # Takes effect only in a file without tables yet (a new one); older files: _convert_to_incremental_vacuum.
        db.execute("PRAGMA auto_vacuum=INCREMENTAL")
        db.execute("PRAGMA journal_mode=WAL")
        db.execute(f"PRAGMA cache_size=-{_CACHE_KIB}")
        db.execute(f"PRAGMA synchronous={self.synchronous.upper()}")
        # Keep the WAL from growing past what one long drain writes; it is truncated after checkpoints.
        db.execute("PRAGMA journal_size_limit=16777216")
        if self._max_page_count is not None:
            db.execute(f"PRAGMA max_page_count={int(self._max_page_count)}")
        db.executescript(_SCHEMA)
        _migrate(db)
        return db

    def _open_sync(self) -> None:
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            self._lock()
            db = self._connect()
            problem = self._check(db)
        except (OSError, sqlite3.OperationalError) as exc:
            self._unlock()
            if not _is_unusable_location(exc):
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
            self._move_aside(problem)
            db = self._connect()
        assert db is not None
        self._db = db
        self._load_stats(db)
        self._convert_to_incremental_vacuum(db)

    def _lock(self) -> None:
        """One process per outbox: two agents sending the same entries would fight over them.

        An advisory ``flock`` on ``<path>.lock``; the kernel releases it when the process dies, so a
        ``kill -9`` never leaves a stale lock behind.
        """
        lock_path = self.path.with_name(self.path.name + ".lock")
        handle = lock_path.open("a")
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError as exc:
            handle.close()
            raise ConfigError(
                "configuration",
                [
                    f"outbox.path: {self.path} is in use by another running agent. Fix: stop it, or give each "
                    "agent its own outbox.path (and its own mqtt.client_id)"
                ],
            ) from exc
        self._lock_handle = handle

    @staticmethod
    def _check(db: sqlite3.Connection) -> str | None:
        rows = db.execute("PRAGMA quick_check").fetchall()
        if rows != [("ok",)]:
            return "; ".join(str(r[0]) for r in rows[:3])
        return None

    def _move_aside(self, problem: str) -> None:
        stamp = dt.datetime.now(dt.UTC).strftime("%Y%m%dT%H%M%SZ")
        target = self.path.with_name(f"{self.path.name}.corrupt-{stamp}")
        self.path.replace(target)
        for suffix in ("-wal", "-shm"):
            side = self.path.with_name(self.path.name + suffix)
            if side.exists():
                side.replace(target.with_name(target.name + suffix))
        self.stats.corrupt_files_moved += 1
        log.error(
            "outbox: %s is not a readable outbox (%s); moved it aside to %s and started a fresh one. "
            "Batches it held are not sent; keep the old file for a post-mortem or delete it",
            self.path,
            problem,
            target,
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

    def _convert_to_incremental_vacuum(self, db: sqlite3.Connection) -> None:
        """A file from an agent before auto_vacuum: convert it (``VACUUM``) when that is cheap, i.e. empty.

        With entries waiting it is left as it is (they are sent first); a later start converts it.
        """
        if db.execute("PRAGMA auto_vacuum").fetchone()[0] != 0 or self.stats.entries:
            return
        try:
            db.execute("PRAGMA auto_vacuum=INCREMENTAL")
            db.execute("VACUUM")
        except sqlite3.Error as exc:  # a full disk has no room for the copy VACUUM makes: harmless, try next start
            log.warning("outbox: could not convert %s to incremental auto-vacuum: %s", self.path, exc)

    def _tidy_after_backlog(self) -> None:
        """Once a large backlog has drained: give the file's free pages and the cached memory back.

        Runs in the worker thread after removals, at most every ``_TIDY_EVERY_S``, one bounded step
        of ``incremental_vacuum`` at a time so appends never wait long; when the free pages are down
        to ``KEEP_FREE_PAGES`` the WAL is truncated and the memory released, once per backlog.
        """
        if not self._tidy_due or self.stats.bytes > _TIDY_DRAINED_BYTES:
            return
        now = time.monotonic()
        if now - self._last_tidy < _TIDY_EVERY_S:
            return
        self._last_tidy = now
        db = self._require_db()
        try:
            free = int(db.execute("PRAGMA freelist_count").fetchone()[0])
            if free > KEEP_FREE_PAGES:
                # sqlite3's execute() steps a statement without result columns once, and each step
                # frees one page; executescript() runs it to its end (and commits nothing: autocommit).
                db.executescript(f"PRAGMA incremental_vacuum({min(free - KEEP_FREE_PAGES, _VACUUM_PAGES_PER_STEP)});")
                if free - KEEP_FREE_PAGES > _VACUUM_PAGES_PER_STEP:
                    return  # more next time
            db.execute("PRAGMA wal_checkpoint(TRUNCATE)").fetchall()
            db.execute("PRAGMA shrink_memory")
        except sqlite3.Error as exc:  # busy or a full disk: the space is reused by new batches anyway
            log.debug("outbox: tidying up after a backlog failed, retried later: %s", exc)
            return
        self._tidy_due = False
        memory.release_free_memory()
        log.info("outbox: backlog drained; %s is back to %.1f MiB", self.path, self._file_mib())

    def _file_mib(self) -> float:
        total = 0
        for suffix in ("", "-wal"):
            with contextlib.suppress(OSError):
                total += self.path.with_name(self.path.name + suffix).stat().st_size
        return total / (1024 * 1024)

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
        if time.monotonic() - self._last_age_check >= _AGE_CHECK_EVERY_S:
            self._drop_expired_sync()
        for attempt in range(2):
            dropped: _Dropped | None = None
            try:
                with _transaction(db):
                    seq = db.execute(
                        "INSERT INTO entries (topic, payload, samples, created_ns, retain) VALUES (?, ?, ?, ?, ?)",
                        (topic, payload, samples, now, int(retain)),
                    ).lastrowid
                    db.executemany(_ADD, [("appended_batches", 1), ("appended_samples", samples)])
                    excess = self.stats.bytes + size - self.max_bytes
                    if excess > 0:
                        dropped = self._drop_oldest(db, excess)
            except sqlite3.Error as exc:  # disk full, I/O error, a file damaged while running: never raise
                if not _is_disk_full(exc) or attempt == 1:
                    self._lose_new(samples, exc)
                    return None
                self._make_room_sync(exc)
                continue
            if dropped is not None:
                self._record_drop(dropped, "the outbox reached outbox.max_bytes")
            self.stats.entries += 1
            self.stats.bytes += size
            self.stats.samples += samples
            self.stats.appended += 1
            self.stats.appended_batches += 1
            self.stats.appended_samples += samples
            if self.stats.bytes >= _TIDY_BACKLOG_BYTES:
                self._tidy_due = True
            if self.stats.oldest_created_ns is None:
                self.stats.oldest_created_ns = now
            if seq is not None:
                self.last_seq = int(seq)
                if self.first_seq is None:
                    self.first_seq = self.last_seq
            return int(seq) if seq is not None else None
        return None  # pragma: no cover - the loop always returns

    def _make_room_sync(self, exc: sqlite3.Error) -> None:
        """Disk full: drop a tenth of what waits (at least one batch), oldest first, to make room."""
        db = self._require_db()
        target = max(1, int(self.stats.bytes * _DISK_FULL_DROP_FRACTION))
        try:
            with _transaction(db):
                dropped = self._drop_oldest(db, target)
        except sqlite3.Error as again:
            log.debug("outbox: could not make room: %s", again)
            return
        if dropped is not None:
            self._record_drop(dropped, f"the disk is full ({exc})")

    def _lose_new(self, samples: int, exc: sqlite3.Error) -> None:
        """The new batch itself could not be stored: it is the one dropped, counted like the others.

        It was read, so it counts as appended too (``appended == delivered + dropped + waiting``).
        On a full or failing disk the counters may not reach the file either; memory has them.
        """
        self.stats.append_errors += 1
        with contextlib.suppress(sqlite3.Error), _transaction(self._require_db()) as db:
            db.executemany(_ADD, [("appended_batches", 1), ("appended_samples", samples)])
            self._persist_counters(db, 1, samples)
        self.stats.appended_batches += 1
        self.stats.appended_samples += samples
        self._record_drop(_Dropped(1, samples, 0, removed_from_file=False), f"a batch could not be stored ({exc})")

    def _drop_oldest(self, db: sqlite3.Connection, excess: int) -> _Dropped | None:
        """Delete the oldest unpinned entries until ``excess`` bytes are freed (inside the caller's transaction)."""
        rows = db.execute(
            "SELECT seq, LENGTH(payload) + LENGTH(topic), samples FROM entries WHERE seq > ? ORDER BY seq",
            (self.pinned_upto,),
        )
        victims: list[int] = []
        freed = samples = 0
        for seq, size, count in rows:
            if freed >= excess:
                break
            victims.append(seq)
            freed += size
            samples += count
        rows.close()
        if not victims:
            return None
        db.execute("DELETE FROM entries WHERE seq >= ? AND seq <= ?", (victims[0], victims[-1]))
        self._persist_counters(db, len(victims), samples)
        return _Dropped(len(victims), samples, freed)

    def _persist_counters(self, db: sqlite3.Connection, batches: int, samples: int) -> None:
        db.executemany(
            "INSERT INTO counters (name, value) VALUES (?, ?) ON CONFLICT(name) DO UPDATE SET value = excluded.value",
            [
                ("dropped_batches", self.stats.dropped_batches + batches),
                ("dropped_samples", self.stats.dropped_samples + samples),
            ],
        )

    def _record_drop(self, dropped: _Dropped, why: str) -> None:
        """After the commit: count the drop, and say so at ERROR if it starts an episode."""
        self.stats.dropped_batches += dropped.batches
        self.stats.dropped_samples += dropped.samples
        self._episode_batches += dropped.batches
        self._episode_samples += dropped.samples
        if dropped.removed_from_file:
            self.stats.entries -= dropped.batches
            self.stats.samples -= dropped.samples
            self.stats.bytes -= dropped.bytes
            self._refresh_oldest()
        if self._dropping:
            return
        self._dropping = True
        self.stats.drop_episodes += 1
        log.error(
            "outbox: DATA LOST: %s, so batches are being dropped, oldest first (bounds: %d bytes, %g s; "
            "%d batch(es) waiting). Further drops in this episode are only counted. Fix: bring the "
            "broker/database back, or give the outbox more room (outbox.max_bytes, outbox.max_age)",
            why,
            self.max_bytes,
            self.max_age,
            self.stats.entries,
        )

    def _maybe_end_episode(self) -> None:
        """Called after acknowledged removals: delivery works again and the outbox has room."""
        if self._dropping and self.stats.bytes <= self.max_bytes * _EPISODE_END_FRACTION:
            log.info(
                "outbox: no longer dropping; this episode dropped %d batch(es) with %d sample(s) "
                "(%d batches in total since the outbox was created)",
                self._episode_batches,
                self._episode_samples,
                self.stats.dropped_batches,
            )
            self._dropping = False
            self._episode_batches = self._episode_samples = 0

    def _drop_expired_sync(self) -> None:
        self._last_age_check = time.monotonic()
        if self.max_age <= 0 or self.stats.entries == 0:
            return
        db = self._require_db()
        cutoff = self._clock_ns() - int(self.max_age * 1e9)
        oldest = self.stats.oldest_created_ns
        if oldest is None or oldest >= cutoff:
            return
        try:
            with _transaction(db):
                batches, samples, freed = db.execute(
                    "SELECT COUNT(*), COALESCE(SUM(samples), 0), COALESCE(SUM(LENGTH(payload) + LENGTH(topic)), 0) "
                    "FROM entries WHERE seq > ? AND created_ns < ?",
                    (self.pinned_upto, cutoff),
                ).fetchone()
                if batches:
                    db.execute("DELETE FROM entries WHERE seq > ? AND created_ns < ?", (self.pinned_upto, cutoff))
                    self._persist_counters(db, int(batches), int(samples))
        except sqlite3.Error as exc:
            log.warning("outbox: could not drop expired batches: %s", exc)
            return
        if batches:
            why = f"batches waited longer than outbox.max_age ({self.max_age:g} s)"
            self._record_drop(_Dropped(int(batches), int(samples), int(freed)), why)

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
        removed = samples = freed = 0
        with _transaction(db):
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
        self.stats.entries -= removed
        self.stats.samples -= samples
        self.stats.bytes -= freed
        self.stats.removed += removed
        if removed:
            self._refresh_oldest()
        self._maybe_end_episode()
        self._tidy_after_backlog()


@dataclass(frozen=True, slots=True)
class _Dropped:
    batches: int
    samples: int
    bytes: int
    removed_from_file: bool = True


def _migrate(db: sqlite3.Connection) -> None:
    """Bring an outbox file written by an older agent up to the current schema, keeping its entries.

    Version 1 files have no ``retain`` column; their entries are telemetry and alert events that
    were never retained, so the column's default (0) is what they meant.
    """
    columns = {row[1] for row in db.execute("PRAGMA table_info(entries)").fetchall()}
    if "retain" not in columns:
        db.execute("ALTER TABLE entries ADD COLUMN retain INTEGER NOT NULL DEFAULT 0")
        log.info("outbox: added the retain column to an outbox file from an older agent; its entries are kept")


@contextlib.contextmanager
def _transaction(db: sqlite3.Connection) -> Iterator[sqlite3.Connection]:
    """BEGIN IMMEDIATE … COMMIT, rolled back on any error, the COMMIT included (autocommit otherwise)."""
    db.execute("BEGIN IMMEDIATE")
    try:
        yield db
        db.execute("COMMIT")
    except BaseException:
        with contextlib.suppress(sqlite3.Error):
            db.execute("ROLLBACK")
        raise


def _is_unusable_location(exc: BaseException) -> bool:
    """The directory or file cannot be created or opened at all (permissions, missing mount, read-only)."""
    if isinstance(exc, OSError):
        return True
    text = str(exc).lower()
    return "unable to open" in text or "readonly" in text or "read-only" in text


def _is_disk_full(exc: sqlite3.Error) -> bool:
    code = getattr(exc, "sqlite_errorcode", None)
    return code == sqlite3.SQLITE_FULL or "full" in str(exc).lower()
