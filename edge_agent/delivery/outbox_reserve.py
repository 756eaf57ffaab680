"""Room to get out of a full disk: a reserve file beside the outbox, and a WAL sized to fit in it.

When the disk is full SQLite cannot even delete: a DELETE writes its pages to the WAL first, and
a checkpoint that would shrink the WAL first writes its pages into the database file. Without
help the outbox could then only drop the *new* batch, keeping the oldest ones forever. So the
outbox keeps ``<path>.reserve``, a file of ``size`` bytes allocated up front. On ``SQLITE_FULL``
it deletes that file, checkpoints and truncates the WAL, and then has room to drop its oldest
entries; the reserve is allocated again once a backlog has drained and the disk has room.

The reserve only helps if the WAL never holds more new pages than it can absorb, so the WAL's
checkpoint interval follows from the reserve: half of it (the rest is for the delete). Both are
scaled to the file system: an eighth of a tiny disk is a lot, 8 MiB of a large one is nothing.
Everything here runs in the outbox's worker thread.
"""

from __future__ import annotations

import contextlib
import errno
import logging
import os
import sqlite3
from dataclasses import dataclass
from pathlib import Path

__all__ = ["PAGE_BYTES", "DiskReserve", "WalSizing", "checkpoint_truncate", "wal_sizing"]

log = logging.getLogger("edge_agent.delivery.outbox")  # the outbox's log lines keep one logger name

PAGE_BYTES = 4096
RESERVE_MAX_BYTES = 8 * 1024 * 1024
RESERVE_MIN_BYTES = 64 * 1024
_RESERVE_FRACTION_OF_DISK = 16
_WAL_DEFAULT_PAGES = 1000  # SQLite's own default checkpoint interval: kept on any disk with room for it
_WAL_MIN_PAGES = 8
_JOURNAL_LIMIT_MAX = 16 * 1024 * 1024
_ZEROS = bytes(64 * 1024)


@dataclass(frozen=True, slots=True)
class WalSizing:
    """The reserve's size and the WAL settings that keep a checkpoint within it."""

    reserve_bytes: int
    autocheckpoint_pages: int
    journal_size_limit: int


def wal_sizing(directory: Path) -> WalSizing:
    """Sizes for an outbox in ``directory``, from the size of its file system."""
    try:
        stat = os.statvfs(directory)
        disk = stat.f_blocks * stat.f_frsize
    except OSError:
        disk = 0
    wanted = disk // _RESERVE_FRACTION_OF_DISK if disk else RESERVE_MAX_BYTES
    reserve = min(RESERVE_MAX_BYTES, max(RESERVE_MIN_BYTES, wanted // PAGE_BYTES * PAGE_BYTES))
    pages = min(_WAL_DEFAULT_PAGES, max(_WAL_MIN_PAGES, reserve // PAGE_BYTES // 2))
    return WalSizing(reserve, pages, min(_JOURNAL_LIMIT_MAX, 2 * reserve))


def checkpoint_truncate(db: sqlite3.Connection) -> bool:
    """Copy the WAL into the database file and cut the WAL to zero bytes; False when there was no room."""
    try:
        busy = db.execute("PRAGMA wal_checkpoint(TRUNCATE)").fetchone()
    except sqlite3.Error as exc:
        log.debug("outbox: checkpoint on a full disk failed: %s", exc)
        return False
    return busy is None or int(busy[0]) == 0


class DiskReserve:
    """The reserve file: allocated while there is room, given up the moment the disk is full."""

    def __init__(self, outbox_path: Path, size: int) -> None:
        self.path = outbox_path.with_name(outbox_path.name + ".reserve")
        self.size = size
        self._missing_logged = False

    @property
    def present(self) -> bool:
        """The reserve is allocated in full."""
        try:
            return self.path.stat().st_size >= self.size
        except OSError:
            return False

    def ensure(self) -> bool:
        """Allocate the reserve unless it is there; False (and one WARNING) when the disk has no room."""
        if self.present:
            return True
        try:
            self._allocate()
        except OSError as exc:
            with contextlib.suppress(OSError):
                self.path.unlink()
            if not self._missing_logged:
                self._missing_logged = True
                log.warning(
                    "outbox: cannot set aside %d KiB beside %s for a full disk (%s); until there is room, a full "
                    "disk may drop new batches instead of the oldest. Fix: free space on that disk",
                    self.size // 1024,
                    self.path.parent,
                    exc.strerror or exc,
                )
            return False
        if self._missing_logged:
            self._missing_logged = False
            log.info("outbox: the %d KiB reserve for a full disk is set aside again (%s)", self.size // 1024, self.path)
        return True

    def release(self) -> bool:
        """Give the reserve's space to the outbox now; True if there was one to give."""
        try:
            self.path.unlink()
        except FileNotFoundError:
            return False
        except OSError as exc:
            log.debug("outbox: could not release the reserve %s: %s", self.path, exc)
            return False
        return True

    def _allocate(self) -> None:
        fd = os.open(self.path, os.O_WRONLY | os.O_CREAT, 0o600)
        try:
            try:
                os.posix_fallocate(fd, 0, self.size)
            except OSError as exc:
                if exc.errno not in (errno.EOPNOTSUPP, errno.EINVAL):
                    raise
                # A file system without fallocate: write the zeros, which allocates the blocks just as well.
                os.lseek(fd, 0, os.SEEK_SET)
                for offset in range(0, self.size, len(_ZEROS)):
                    os.write(fd, _ZEROS[: min(len(_ZEROS), self.size - offset)])
        finally:
            os.close(fd)
