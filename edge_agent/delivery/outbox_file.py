"""The outbox's SQLite file: where it lives, its schema, opening it safely, and reading it from outside.

One process per file (an advisory ``flock``: two agents sending the same entries would fight over
them). A file that is not a readable SQLite database at start is renamed to
``<path>.corrupt-<UTC time>`` and a fresh one started, so the agent keeps working and the old
file stays for a post-mortem. The counters live in the file, in the same transaction as the
change they count, so that after any crash ``appended == delivered + dropped + waiting`` holds.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import fcntl
import logging
import os
import sqlite3
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Literal, TextIO

from edge_agent.core.errors import ConfigError

__all__ = [
    "ADD_COUNTER",
    "Entry",
    "OutboxStats",
    "connect",
    "default_outbox_path",
    "is_disk_full",
    "is_unusable_location",
    "lock",
    "move_aside",
    "quick_check",
    "read_counters",
    "transaction",
]

log = logging.getLogger("edge_agent.delivery.outbox")  # the outbox's log lines keep one logger name

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
ADD_COUNTER = (
    "INSERT INTO counters (name, value) VALUES (?, ?) ON CONFLICT(name) DO UPDATE SET value = value + excluded.value"
)
# SQLite's page cache for the outbox connection (its default is 2,000 KiB, which a backlog fills and keeps).
_CACHE_KIB = 512


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


def connect(
    path: Path,
    synchronous: Literal["normal", "full"],
    max_page_count: int | None,
    *,
    wal_autocheckpoint_pages: int = 1000,
    journal_size_limit: int = 16 * 1024 * 1024,
) -> sqlite3.Connection:
    """Open (or create) the file with the outbox's settings and schema.

    The WAL settings come from ``edge_agent.delivery.outbox_reserve``: on a small disk the WAL is
    checkpointed more often, so that the reserve is always enough to empty it.
    """
    db = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
    # Takes effect only in a file without tables yet (a new one); older files: _convert_to_incremental_vacuum.
    db.execute("PRAGMA auto_vacuum=INCREMENTAL")
    db.execute("PRAGMA journal_mode=WAL")
    db.execute(f"PRAGMA cache_size=-{_CACHE_KIB}")
    db.execute(f"PRAGMA synchronous={synchronous.upper()}")
    # Keep the WAL from growing past what one long drain writes; it is truncated after checkpoints.
    db.execute(f"PRAGMA journal_size_limit={int(journal_size_limit)}")
    db.execute(f"PRAGMA wal_autocheckpoint={int(wal_autocheckpoint_pages)}")
    if max_page_count is not None:
        db.execute(f"PRAGMA max_page_count={int(max_page_count)}")
    db.executescript(_SCHEMA)
    _migrate(db)
    return db


def lock(path: Path) -> TextIO:
    """One process per outbox: two agents sending the same entries would fight over them.

    An advisory ``flock`` on ``<path>.lock``; the kernel releases it when the process dies, so a
    ``kill -9`` never leaves a stale lock behind.
    """
    lock_path = path.with_name(path.name + ".lock")
    handle = lock_path.open("a")
    try:
        fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError as exc:
        handle.close()
        raise ConfigError(
            "configuration",
            [
                f"outbox.path: {path} is in use by another running agent. Fix: stop it, or give each "
                "agent its own outbox.path (and its own mqtt.client_id)"
            ],
        ) from exc
    return handle


def quick_check(db: sqlite3.Connection) -> str | None:
    """None for a sound file, else what SQLite found wrong."""
    rows = db.execute("PRAGMA quick_check").fetchall()
    if rows != [("ok",)]:
        return "; ".join(str(r[0]) for r in rows[:3])
    return None


def move_aside(path: Path, problem: str) -> None:
    """Rename an unreadable file (and its WAL) out of the way, saying so at ERROR."""
    stamp = dt.datetime.now(dt.UTC).strftime("%Y%m%dT%H%M%SZ")
    target = path.with_name(f"{path.name}.corrupt-{stamp}")
    path.replace(target)
    for suffix in ("-wal", "-shm"):
        side = path.with_name(path.name + suffix)
        if side.exists():
            side.replace(target.with_name(target.name + suffix))
    log.error(
        "outbox: %s is not a readable outbox (%s); moved it aside to %s and started a fresh one. "
        "Batches it held are not sent; keep the old file for a post-mortem or delete it",
        path,
        problem,
        target,
    )


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
def transaction(db: sqlite3.Connection) -> Iterator[sqlite3.Connection]:
    """BEGIN IMMEDIATE … COMMIT, rolled back on any error, the COMMIT included (autocommit otherwise)."""
    db.execute("BEGIN IMMEDIATE")
    try:
        yield db
        db.execute("COMMIT")
    except BaseException:
        with contextlib.suppress(sqlite3.Error):
            db.execute("ROLLBACK")
        raise


def is_unusable_location(exc: BaseException) -> bool:
    """The directory or file cannot be created or opened at all (permissions, missing mount, read-only)."""
    if isinstance(exc, OSError):
        return True
    text = str(exc).lower()
    return "unable to open" in text or "readonly" in text or "read-only" in text


def is_disk_full(exc: sqlite3.Error) -> bool:
    """SQLITE_FULL, or a message that says the disk is full."""
    code = getattr(exc, "sqlite_errorcode", None)
    return code == sqlite3.SQLITE_FULL or "full" in str(exc).lower()
