"""Backlog replay progress: what an operator sees while an outage's backlog drains.

After the broker (or InfluxDB) comes back, the outbox may hold hours of batches. Draining them
takes minutes, and without a word the operator cannot tell a healthy replay from a stuck one.
So a sink that drains an outbox reports one *episode* per reconnect with a real backlog:

    backlog: replaying 50,000 entries (12.3 MiB) to the broker mosquitto:1883
    backlog: 12,345 of 50,000 sent (25 %), about 40 s left at 1,200/s; polling goes on, 310 new batches behind it
    backlog: replayed 50,000 entries in 41.7 s (1,199/s)

An episode counts the entries that were waiting when it began (up to ``Outbox.last_seq`` at that
moment); live batches appended meanwhile queue behind them (the outbox is one FIFO) and are
reported as such, not counted. The episode ends when the oldest waiting entry is newer than its
mark. Entries dropped at the outbox's bound during the replay (the outbox logs that at ERROR) are
named in the final line. A connection lost mid-way ends the episode with a WARNING; the next
connection starts a new one with what is left.

Progress is logged at most every ``every_s`` (10 s), at INFO, so the journal and JSON logs
(Loki) get a handful of lines per replay, never one per batch. No progress bar is drawn, even on
a terminal (``edge_agent.commands.progress``): a replay happens inside the long-running agent, whose
stderr is shared by every logger of the process (pollers, paho's thread, the outbox thread). A
bar redraws its line with carriage returns, and each log line written meanwhile would cut it
into pieces; keeping a bar intact would mean routing every handler through tqdm for minutes.
The log lines carry the same figures (count, percentage, rate, time left).

``state()`` gives the same figures to the retained status topic, the status page and
``/metrics``, so a dashboard can draw the progress too.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterable
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from edge_agent.delivery.outbox import Outbox

__all__ = ["MIN_ENTRIES", "PROGRESS_EVERY_S", "BacklogReplay"]

log = logging.getLogger(__name__)

MIN_ENTRIES = 500
"""A backlog smaller than this drains in a moment (a few seconds of a line): not worth an episode."""
PROGRESS_EVERY_S = 10.0
"""At most one progress line this often."""
MIB = 1024 * 1024


class BacklogReplay:
    """Tracks one sink's replay episodes; every method runs on the event loop and never waits.

    The sink calls ``begin`` when its link is up again (and at its first success after a start),
    ``delivered`` with the ``seq`` of entries the far end acknowledged, ``check`` after it removed
    them from the outbox, and ``interrupt`` when the link is lost.
    """

    def __init__(
        self,
        outbox: Outbox,
        destination: str,
        *,
        min_entries: int = MIN_ENTRIES,
        every_s: float = PROGRESS_EVERY_S,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.outbox = outbox
        self.destination = destination
        """Where the backlog goes, for the log lines: ``the broker host:port``, ``InfluxDB http://…``."""
        self.min_entries = min_entries
        self.every_s = every_s
        self._clock = clock
        self.active = False
        self.episodes = 0
        """Episodes begun by this process."""
        self.total = 0
        """Entries waiting when the current (or last) episode began."""
        self.done = 0
        """Entries of the current (or last) episode acknowledged so far."""
        self.total_bytes = 0
        self._upto = 0
        self._appended_at_start = 0
        self._dropped_at_start = 0
        self._started = 0.0
        self._started_ns = 0
        self._last_line = 0.0
        self._elapsed = 0.0

    # ------------------------------------------------------------------ events from the sink
    def begin(self) -> None:
        """The link is up: start an episode if enough waits (and none is running)."""
        stats = self.outbox.stats
        if self.active or stats.entries < self.min_entries:
            return
        self.active = True
        self.episodes += 1
        self.total, self.done, self.total_bytes = stats.entries, 0, stats.bytes
        self._upto = self.outbox.last_seq
        self._appended_at_start = stats.appended
        self._dropped_at_start = stats.dropped_batches
        self._started = self._last_line = self._clock()
        self._started_ns = time.time_ns()
        self._elapsed = 0.0
        log.info(
            "backlog: replaying %s entries (%.1f MiB) to %s, oldest first; new batches queue behind them",
            f"{self.total:,}",
            self.total_bytes / MIB,
            self.destination,
        )

    def delivered(self, seqs: Iterable[int]) -> None:
        """Entries the far end acknowledged (each once); those of the episode are counted."""
        if self.active:
            upto = self._upto
            self.done += sum(1 for seq in seqs if seq <= upto)

    def check(self) -> None:
        """After acknowledged entries left the outbox: end the episode, or log progress when due."""
        if not self.active:
            return
        now = self._clock()
        first = self.outbox.first_seq
        if first is None or first > self._upto:
            self._finish(now)
        elif now - self._last_line >= self.every_s:
            self._last_line = now
            self._progress(now)

    def interrupt(self, why: str) -> None:
        """The link went away (or the agent stops) mid-replay: say how far it got."""
        if not self.active:
            return
        self.active = False
        self._elapsed = self._clock() - self._started
        log.warning(
            "backlog: replay to %s interrupted after %s of %s entries (%.0f s): %s. "
            "What is left stays in the outbox and is replayed next",
            self.destination,
            f"{self.done:,}",
            f"{self.total:,}",
            self._elapsed,
            why,
        )

    # ------------------------------------------------------------------ reports
    def state(self) -> dict[str, Any] | None:
        """The current (or last) episode for status payloads and the page; None before the first."""
        if not self.episodes:
            return None
        elapsed = self._clock() - self._started if self.active else self._elapsed
        return {
            "active": self.active,
            "total": self.total,
            "done": self.done,
            "bytes": self.total_bytes,
            "started": self._started_ns,
            "elapsed_s": round(elapsed, 1),
            "rate": round(self.done / elapsed, 1) if elapsed > 0 else None,
        }

    def _progress(self, now: float) -> None:
        elapsed = now - self._started
        rate = self.done / elapsed if elapsed > 0 else 0.0
        left = max(self.total - self.done, 0)
        eta = f"about {_duration(left / rate)} left at {rate:,.0f}/s" if rate > 0 else "nothing acknowledged yet"
        behind = self.outbox.stats.appended - self._appended_at_start
        log.info(
            "backlog: %s of %s sent (%d %%), %s; polling goes on, %s new batches behind it",
            f"{self.done:,}",
            f"{self.total:,}",
            100 * self.done // max(self.total, 1),
            eta,
            f"{behind:,}",
        )

    def _finish(self, now: float) -> None:
        self.active = False
        self._elapsed = elapsed = now - self._started
        dropped = self.outbox.stats.dropped_batches - self._dropped_at_start
        rate = f"{self.done / elapsed:,.0f}/s" if elapsed > 0 else "at once"
        lost = f"; {dropped:,} dropped at the outbox's bound meanwhile (see the ERROR above)" if dropped else ""
        log.info(
            "backlog: replayed %s entries to %s in %s (%s)%s",
            f"{self.done:,}",
            self.destination,
            _duration(elapsed),
            rate,
            lost,
        )


def _duration(seconds: float) -> str:
    """``4.2 s``, ``40 s``, ``12 min``, ``3.5 h``: rounded the way a person reads a wait."""
    if seconds < 10:
        return f"{seconds:.1f} s"
    if seconds < 120:
        return f"{seconds:.0f} s"
    if seconds < 7200:
        return f"{seconds / 60:.0f} min"
    return f"{seconds / 3600:.1f} h"
