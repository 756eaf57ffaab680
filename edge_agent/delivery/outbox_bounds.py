"""The outbox's bounds: what is dropped when it is full, too old, or the disk has no room, and how that is said.

The payload bytes held are capped by ``max_bytes`` and each entry's age by ``max_age``. At a
bound the *oldest* entries that are not in flight are deleted, and counted (batches and samples);
the first drop of an episode is logged at ERROR, the end of the episode at INFO, and the counters
are kept in the file so they survive restarts. An entry already handed to the network (in flight,
``seq`` at or below ``pinned_upto``) is never dropped: it may still arrive, and a drop counter that
over-counts would be useless. The overshoot is therefore at most the in-flight window.

Disk full while appending: the oldest droppable entries are deleted to make room and the append
is retried; if even that fails the new batch is the one dropped and counted. Everything here runs
in the outbox's worker thread.
"""

from __future__ import annotations

import contextlib
import logging
import sqlite3
import time
from collections.abc import Callable
from dataclasses import dataclass

from edge_agent.delivery.outbox_file import ADD_COUNTER, OutboxStats, transaction

__all__ = ["Bounds", "Dropped"]

log = logging.getLogger("edge_agent.delivery.outbox")  # the outbox's log lines keep one logger name

_AGE_CHECK_EVERY_S = 1.0
# Fraction of the byte bound under which a drop episode is over (hysteresis, so a full outbox
# hovering at its bound does not log an ERROR for every single batch).
_EPISODE_END_FRACTION = 0.9
_DISK_FULL_DROP_FRACTION = 0.1


@dataclass(frozen=True, slots=True)
class Dropped:
    """Batches given up in one step; ``removed_from_file`` False for a new batch that never got in."""

    batches: int
    samples: int
    bytes: int
    removed_from_file: bool = True


class Bounds:
    """Enforces ``max_bytes`` and ``max_age`` on one outbox file, counting every drop in ``stats``.

    ``refresh_oldest`` is the outbox's: after entries left the file it re-reads the oldest one.
    """

    def __init__(
        self,
        stats: OutboxStats,
        *,
        max_bytes: int,
        max_age: float,
        clock_ns: Callable[[], int],
        refresh_oldest: Callable[[], None],
    ) -> None:
        self.stats = stats
        self.max_bytes = max_bytes
        self.max_age = max_age
        self._clock_ns = clock_ns
        self._refresh_oldest = refresh_oldest
        self._dropping = False
        self._episode_batches = 0
        self._episode_samples = 0
        self._last_age_check = 0.0

    def age_check_due(self) -> bool:
        """``append`` drops expired entries at most once a second."""
        return time.monotonic() - self._last_age_check >= _AGE_CHECK_EVERY_S

    def make_room(self, db: sqlite3.Connection, exc: sqlite3.Error, pinned_upto: int) -> None:
        """Disk full: drop a tenth of what waits (at least one batch), oldest first, to make room."""
        target = max(1, int(self.stats.bytes * _DISK_FULL_DROP_FRACTION))
        try:
            with transaction(db):
                dropped = self.drop_oldest(db, target, pinned_upto)
        except sqlite3.Error as again:
            log.debug("outbox: could not make room: %s", again)
            return
        if dropped is not None:
            self.record(dropped, f"the disk is full ({exc})")

    def lose_new(self, db: sqlite3.Connection, samples: int, exc: sqlite3.Error) -> None:
        """The new batch itself could not be stored: it is the one dropped, counted like the others.

        It was read, so it counts as appended too (``appended == delivered + dropped + waiting``).
        On a full or failing disk the counters may not reach the file either; memory has them.
        """
        self.stats.append_errors += 1
        with contextlib.suppress(sqlite3.Error), transaction(db):
            db.executemany(ADD_COUNTER, [("appended_batches", 1), ("appended_samples", samples)])
            self.persist_counters(db, 1, samples)
        self.stats.appended_batches += 1
        self.stats.appended_samples += samples
        self.record(Dropped(1, samples, 0, removed_from_file=False), f"a batch could not be stored ({exc})")

    def drop_oldest(self, db: sqlite3.Connection, excess: int, pinned_upto: int) -> Dropped | None:
        """Delete the oldest unpinned entries until ``excess`` bytes are freed (inside the caller's transaction)."""
        rows = db.execute(
            "SELECT seq, LENGTH(payload) + LENGTH(topic), samples FROM entries WHERE seq > ? ORDER BY seq",
            (pinned_upto,),
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
        self.persist_counters(db, len(victims), samples)
        return Dropped(len(victims), samples, freed)

    def persist_counters(self, db: sqlite3.Connection, batches: int, samples: int) -> None:
        """Write the drop counters as they will be after this drop (inside the caller's transaction)."""
        db.executemany(
            "INSERT INTO counters (name, value) VALUES (?, ?) ON CONFLICT(name) DO UPDATE SET value = excluded.value",
            [
                ("dropped_batches", self.stats.dropped_batches + batches),
                ("dropped_samples", self.stats.dropped_samples + samples),
            ],
        )

    def record(self, dropped: Dropped, why: str) -> None:
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

    def maybe_end_episode(self) -> None:
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

    def drop_expired(self, db: sqlite3.Connection, pinned_upto: int) -> None:
        """Drop the unpinned entries older than ``max_age``."""
        self._last_age_check = time.monotonic()
        if self.max_age <= 0 or self.stats.entries == 0:
            return
        cutoff = self._clock_ns() - int(self.max_age * 1e9)
        oldest = self.stats.oldest_created_ns
        if oldest is None or oldest >= cutoff:
            return
        try:
            with transaction(db):
                batches, samples, freed = db.execute(
                    "SELECT COUNT(*), COALESCE(SUM(samples), 0), COALESCE(SUM(LENGTH(payload) + LENGTH(topic)), 0) "
                    "FROM entries WHERE seq > ? AND created_ns < ?",
                    (pinned_upto, cutoff),
                ).fetchone()
                if batches:
                    db.execute("DELETE FROM entries WHERE seq > ? AND created_ns < ?", (pinned_upto, cutoff))
                    self.persist_counters(db, int(batches), int(samples))
        except sqlite3.Error as exc:
            log.warning("outbox: could not drop expired batches: %s", exc)
            return
        if batches:
            why = f"batches waited longer than outbox.max_age ({self.max_age:g} s)"
            self.record(Dropped(int(batches), int(samples), int(freed)), why)
