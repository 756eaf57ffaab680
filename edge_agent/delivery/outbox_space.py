"""Giving space back after a backlog: the outbox file's free pages to the disk, cached memory to the system.

A long outage grows the file and SQLite's page cache, and SQLite on its own never gives either
back. Files are created with ``auto_vacuum=INCREMENTAL`` (an older file is converted at the first
start that finds it empty), and once a backlog of at least ``TIDY_BACKLOG_BYTES`` has drained,
the free pages go back to the file system a few MiB at a time, then the WAL is truncated,
SQLite's page cache released (``shrink_memory``) and the heap's free pages (``malloc_trim``).
After the disk was full the same is done for a backlog of any size, keeping no free pages, and the
reserve file for the next full disk is allocated again (``edge_agent.delivery.outbox_reserve``).
Everything here runs in the outbox's worker thread.
"""

from __future__ import annotations

import contextlib
import logging
import sqlite3
import time
from pathlib import Path

from edge_agent.core import memory
from edge_agent.delivery.outbox_reserve import PAGE_BYTES, DiskReserve, checkpoint_truncate

__all__ = ["KEEP_FREE_PAGES", "SpaceReclaimer", "convert_to_incremental_vacuum"]

log = logging.getLogger("edge_agent.delivery.outbox")  # the outbox's log lines keep one logger name

# A backlog this large (payload bytes) has grown the file and the cache: tidy up once it is down to
# _TIDY_DRAINED_BYTES (a live window in flight stays far below it).
TIDY_BACKLOG_BYTES = 4 * 1024 * 1024
_TIDY_DRAINED_BYTES = 1024 * 1024
_TIDY_EVERY_S = 1.0
# Pages handed back per step (8 MiB of 4 KiB pages: tens of ms of the worker thread, so appends wait
# little), and free pages kept for the next batches instead of growing the file again at once.
_VACUUM_PAGES_PER_STEP = 2048
KEEP_FREE_PAGES = 256


def convert_to_incremental_vacuum(db: sqlite3.Connection, path: Path, entries: int) -> None:
    """A file from an agent before auto_vacuum: convert it (``VACUUM``) when that is cheap, i.e. empty.

    With entries waiting it is left as it is (they are sent first); a later start converts it.
    """
    if db.execute("PRAGMA auto_vacuum").fetchone()[0] != 0 or entries:
        return
    try:
        db.execute("PRAGMA auto_vacuum=INCREMENTAL")
        db.execute("VACUUM")
    except sqlite3.Error as exc:  # a full disk has no room for the copy VACUUM makes: harmless, try next start
        log.warning("outbox: could not convert %s to incremental auto-vacuum: %s", path, exc)


class SpaceReclaimer:
    """Remembers that a backlog grew the file, and tidies up in bounded steps once it has drained."""

    def __init__(self, path: Path, reserve: DiskReserve) -> None:
        self.path = path
        self._reserve = reserve
        self._due = False
        self._keep_free = KEEP_FREE_PAGES
        self._last = 0.0

    def held(self, waiting_bytes: int) -> None:
        """After an append: a backlog this large will need tidying once delivered."""
        if waiting_bytes >= TIDY_BACKLOG_BYTES:
            self._due = True

    def after_disk_full(self) -> None:
        """The disk was full: once drained, give back every free page and allocate the reserve again."""
        self._due = True
        self._keep_free = 0

    def after_removal(self, db: sqlite3.Connection, waiting_bytes: int) -> None:
        """Once a large backlog has drained: give the file's free pages and the cached memory back.

        At most every ``_TIDY_EVERY_S``, one bounded step of ``incremental_vacuum`` at a time so
        appends never wait long; when the free pages are down to ``KEEP_FREE_PAGES`` the WAL is
        truncated and the memory released, once per backlog.
        """
        if not self._due or waiting_bytes > _TIDY_DRAINED_BYTES:
            return
        now = time.monotonic()
        if now - self._last < _TIDY_EVERY_S:
            return
        self._last = now
        try:
            if not self._vacuum_step(db):
                return  # more next time
            db.execute("PRAGMA wal_checkpoint(TRUNCATE)").fetchall()
            db.execute("PRAGMA shrink_memory")
        except sqlite3.Error as exc:  # busy or a full disk: the space is reused by new batches anyway
            log.debug("outbox: tidying up after a backlog failed, retried later: %s", exc)
            return
        if not self._reserve.ensure():
            return  # the disk has no room yet: try again after the next removals
        self._due = False
        self._keep_free = KEEP_FREE_PAGES
        memory.release_free_memory()
        log.info("outbox: backlog drained; %s is back to %.1f MiB", self.path, self._file_mib())

    def _vacuum_step(self, db: sqlite3.Connection) -> bool:
        """Hand free pages back, at most ``_VACUUM_PAGES_PER_STEP``; True once down to the pages kept.

        After a full disk the WAL must fit in the little room there is: pages are moved a few at a
        time, and the WAL emptied into the (shrinking) file after each few.
        """
        keep = self._keep_free
        small_steps = keep == 0
        step = max(4, self._reserve.size // PAGE_BYTES // 4) if small_steps else _VACUUM_PAGES_PER_STEP
        budget = _VACUUM_PAGES_PER_STEP
        while True:
            free = int(db.execute("PRAGMA freelist_count").fetchone()[0])
            if free <= keep:
                return True
            if budget <= 0:
                return False
            pages = min(free - keep, step, budget)
            # sqlite3's execute() steps a statement without result columns once, and each step
            # frees one page; executescript() runs it to its end (and commits nothing: autocommit).
            db.executescript(f"PRAGMA incremental_vacuum({pages});")
            budget -= pages
            if small_steps:
                checkpoint_truncate(db)

    def _file_mib(self) -> float:
        total = 0
        for suffix in ("", "-wal"):
            with contextlib.suppress(OSError):
                total += self.path.with_name(self.path.name + suffix).stat().st_size
        return total / (1024 * 1024)
