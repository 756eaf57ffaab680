"""The outbox's bounds: what is dropped when it is full, too old, or the disk has no room, and how that is said.

The payload bytes held are capped by ``max_bytes`` and each entry's age by ``max_age``. At a
bound the *oldest* entries that are not in flight are deleted, and counted (batches and samples);
the first drop of an episode is logged at ERROR, the end of the episode at INFO, and the counters
are kept in the file so they survive restarts. An entry already handed to the network (in flight,
``seq`` at or below ``pinned_upto``) is never dropped: it may still arrive, and a drop counter that
over-counts would be useless. The overshoot is therefore at most the in-flight window.

Disk full while appending: the outbox first frees its reserve and empties the WAL
(``edge_agent.delivery.outbox_reserve``), then a tenth of the droppable entries, oldest first, is
deleted and the append retried. What fitted then becomes a second bound (``disk_cap``) until the
episode ends, so that from there on each new batch pushes out the oldest instead of running into
the full disk again. Only if even the delete fails is the new batch the one dropped; the log says
so in those words (a state of its own, logged when it starts). Everything here runs in the
outbox's worker thread.
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
        self.disk_cap: int | None = None
        """Payload bytes that fitted on the disk when it was full; a bound like ``max_bytes`` until the episode ends."""
        self._dropping: str | None = None  # None, "oldest" or "newest": what the last ERROR said
        self._episode_batches = 0
        self._episode_samples = 0
        self._last_age_check = 0.0

    def age_check_due(self) -> bool:
        """``append`` drops expired entries at most once a second."""
        return time.monotonic() - self._last_age_check >= _AGE_CHECK_EVERY_S

    @property
    def limit(self) -> int:
        """The byte bound in force: ``max_bytes``, or less while a full disk set ``disk_cap``."""
        return self.max_bytes if self.disk_cap is None else min(self.max_bytes, self.disk_cap)

    def make_room(self, db: sqlite3.Connection, exc: sqlite3.Error, pinned_upto: int, room: int) -> bool:
        """Disk full: drop a tenth of what waits, oldest first, at most ``room`` bytes; True if something went.

        ``room`` is what the WAL can take on the full disk (a delete writes the pages it frees).
        What is left becomes ``disk_cap``, so that the next appends drop the oldest in their own
        transaction (reusing the freed pages) rather than hitting the full disk again.
        """
        target = max(1, min(room, int(self.stats.bytes * _DISK_FULL_DROP_FRACTION)))
        try:
            with transaction(db):
                dropped = self.drop_oldest(db, target, pinned_upto)
        except sqlite3.Error as again:
            log.debug("outbox: could not make room: %s", again)
            return False
        if dropped is None:
            return False
        self.disk_cap = self.stats.bytes - dropped.bytes
        self.record(dropped, f"the disk is full ({exc})")
        return True

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
        state = "oldest" if dropped.removed_from_file else "newest"
        if self._dropping == state:
            return
        self._dropping = state
        self.stats.drop_episodes += 1
        if state == "oldest":
            log.error(
                "outbox: DATA LOST: %s, so batches are being dropped, oldest first (bounds: %d bytes, %g s; "
                "%d batch(es) waiting). Further drops in this episode are only counted. Fix: bring the "
                "broker/database back, free space on the outbox's disk, or give the outbox more room "
                "(outbox.max_bytes, outbox.max_age)",
                why,
                self.limit,
                self.max_age,
                self.stats.entries,
            )
        else:
            log.error(
                "outbox: DATA LOST: %s, and there is no room even to drop older ones, so NEW batches are being "
                "dropped (%d older batch(es) kept). Further such drops are only counted. Fix: free space on the "
                "disk of outbox.path",
                why,
                self.stats.entries,
            )

    def maybe_end_episode(self) -> bool:
        """Called after acknowledged removals: delivery works again and the outbox has room; True if it ended."""
        if not self._dropping or self.stats.bytes > self.limit * _EPISODE_END_FRACTION:
            return False
        log.info(
            "outbox: no longer dropping; this episode dropped %d batch(es) with %d sample(s) "
            "(%d batches in total since the outbox was created)",
            self._episode_batches,
            self._episode_samples,
            self.stats.dropped_batches,
        )
        self._dropping = None
        self.disk_cap = None
        self._episode_batches = self._episode_samples = 0
        return True

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
