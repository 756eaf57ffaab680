"""The last hour of every numeric tag, in memory, for the status page's trend charts.

``HistoryBuffer`` is a sink: the pollers hand it every batch like the MQTT publisher. All tags
of a machine are read together and a batch carries one time for all of them
(``Batch.polled_at_ns``), so the times are kept once per machine and each tag keeps only its
values. Per machine there are two fixed-size rings, so memory is bounded by tags x points and
does not grow with uptime:

* a *fine* ring with the machine's newest polls at full rate (the last few minutes): one time
  per poll, and one raw value per tag and poll (float64, so a drawn point is exactly the value
  that was read), and
* a *coarse* ring of 5 s buckets covering the whole hour: one time per bucket (the mean time
  of the machine's polls in it), and one mean per tag and bucket (float32: a mean drawn on a
  chart needs 7 significant digits, not 16, and this halves the larger ring). A tag that
  missed some polls of a bucket (it appeared, disappeared or had bad readings) has its own mean
  time there, kept in one byte as its place in the bucket to 1/255 of the bucket (20 ms), so
  its mean is drawn where its readings were, not where its machine's were.

The value rings are one 2-D array per machine (a row per poll or bucket, a column per tag), so
a batch is one row write. A tag that is missing from a poll, or whose reading was not drawable,
has NaN in that row, and a query leaves those out: a gap in the data is a gap in the chart.
The fine ring is the machine's last ``fine_points`` polls that had anything to draw, so a tag
that missed some of them has fewer raw points than its siblings, and its older readings show as
means, like theirs. A tag seen for the first time later than its machine's other tags gets a new
column (NaN for the polls before it; the machine's arrays are copied once per batch that brings
new tags); a tag that disappears keeps its column, and its points age out of the window.

A query returns coarse points up to where the fine ring begins, then the fine points, so a
chart is exact for the recent minutes and smooth beyond. Only good, finite numeric values go
into the rings (a bad reading has no value to draw; booleans become 0/1). Points are placed at
the time the agent read them (``Batch.polled_at_ns``, the agent's clock), not the machine's
source timestamp: a PLC whose clock is an hour off must still draw a trend of the last hour.
Two reads at the same instant are one point; a poll older than the machine's last one is not
drawn, unless the clock went back by more than the window, which restarts the machine's trends.
The newest sample of every tag (any quality, with its reason) and every machine's connection state with its
reason and since-when are kept too, so the page can say *why* a value is missing.

Everything runs on the event loop and ``submit`` is a few array writes per batch, so the poll
loop is never delayed. The number of series is capped (``max_series``); tags beyond the cap are
counted in ``rejected_series`` and logged once, never silently grown.
"""

from __future__ import annotations

import logging
import math
import time
from dataclasses import dataclass
from typing import TypeVar

import numpy as np
import numpy.typing as npt

from edge_agent.core.origin import Origin
from edge_agent.core.samples import Batch, Quality, Sample

log = logging.getLogger(__name__)

NS = 1_000_000_000

Floats = npt.NDArray[np.float64]
Times = npt.NDArray[np.int64]
_Item = TypeVar("_Item", bound=np.generic)

FINE_DTYPE = np.dtype(np.float64)
"""Raw values: exact, because the page shows them as the value that was read."""
COARSE_DTYPE = np.dtype(np.float32)
"""5 s means: 7 significant digits are more than a chart (or a sensor) resolves."""
OFFSET_DTYPE = np.dtype(np.uint8)
"""A tag's own mean time in a bucket it missed polls of: ``QUANTA``ths of the bucket."""
QUANTA = 255
SHARED = 255
"""The offset for "in every poll of the bucket": the tag's mean time is the machine's, exactly."""


@dataclass(frozen=True, slots=True)
class MachineState:
    """A machine's link as last reported by its poller: ``up`` / ``down`` with the reason."""

    state: str
    reason: str | None
    since_ns: int


@dataclass(frozen=True, slots=True)
class Series:
    """Points of one tag, oldest first: UTC nanoseconds (when the agent read them) and values."""

    times_ns: Times
    values: Floats

    def __len__(self) -> int:
        return len(self.times_ns)


def _ring_order(head: int, size: int, capacity: int) -> npt.NDArray[np.intp]:
    """Row indices of a ring, oldest first (``head`` is the next write position)."""
    return (np.arange(size, dtype=np.intp) + (head - size)) % capacity


class _MachineHistory:
    """One machine's rings: a time per poll (fine) and per bucket (coarse), a value column per tag.

    Rows are written whole (NaN where the tag had no drawable value), so a ring never holds a
    stale value from a poll it overwrote. The open bucket's sums (of values, of times, and the
    count, per tag) are kept until the first poll of the next bucket closes it into a coarse row.
    """

    __slots__ = (
        "_bucket_count",
        "_bucket_polls",
        "_bucket_start",
        "_bucket_sum",
        "_bucket_t_sum",
        "_bucket_tag_t_sum",
        "_coarse_head",
        "_coarse_size",
        "_fine_head",
        "_fine_size",
        "coarse_off",
        "coarse_t",
        "coarse_v",
        "columns",
        "fine_t",
        "fine_v",
        "last_ns",
        "step_ns",
    )

    def __init__(self, fine_points: int, coarse_points: int, step_ns: int) -> None:
        self.step_ns = step_ns
        self.columns: dict[str, int] = {}
        self.fine_t = np.zeros(fine_points, dtype=np.int64)
        self.fine_v = np.full((fine_points, 0), np.nan, dtype=FINE_DTYPE)
        self.coarse_t = np.zeros(coarse_points, dtype=np.int64)
        self.coarse_v = np.full((coarse_points, 0), np.nan, dtype=COARSE_DTYPE)
        self.coarse_off = np.full((coarse_points, 0), SHARED, dtype=OFFSET_DTYPE)
        self._bucket_sum = np.zeros(0, dtype=np.float64)
        self._bucket_tag_t_sum = np.zeros(0, dtype=np.int64)
        self._bucket_count = np.zeros(0, dtype=np.int32)
        self.last_ns: int | None = None
        self._fine_head = self._fine_size = 0
        self._coarse_head = self._coarse_size = 0
        self._bucket_start: int | None = None
        self._bucket_t_sum = 0
        self._bucket_polls = 0

    def add_tags(self, tags: list[str]) -> None:
        """Give each new tag a column, NaN for every poll before it (one copy for all of them)."""
        old = len(self.columns)
        for index, tag in enumerate(tags, start=old):
            self.columns[tag] = index
        new = len(self.columns)
        self.fine_v = _widen(self.fine_v, new, np.nan)
        self.coarse_v = _widen(self.coarse_v, new, np.nan)
        self.coarse_off = _widen(self.coarse_off, new, SHARED)
        self._bucket_sum = np.concatenate([self._bucket_sum, np.zeros(new - old, dtype=np.float64)])
        self._bucket_tag_t_sum = np.concatenate([self._bucket_tag_t_sum, np.zeros(new - old, dtype=np.int64)])
        self._bucket_count = np.concatenate([self._bucket_count, np.zeros(new - old, dtype=np.int32)])

    def add(self, t_ns: int, columns: npt.NDArray[np.intp], values: Floats) -> int:
        """Record one poll's values; returns how many points were added (0 for an older poll).

        A poll at the same instant as the last one only fills the tags that poll lacked (two
        reads at one instant are one point, the first); an older poll is dropped.
        """
        if self.last_ns is not None and t_ns <= self.last_ns:
            if t_ns < self.last_ns:
                return 0
            row = (self._fine_head - 1) % len(self.fine_t)
            empty = np.isnan(self.fine_v[row, columns])
            columns, values = columns[empty], values[empty]
        else:
            self.last_ns = t_ns
            row = self._fine_head
            self.fine_t[row] = t_ns
            self.fine_v[row] = np.nan
            self._fine_head = (row + 1) % len(self.fine_t)
            self._fine_size = min(self._fine_size + 1, len(self.fine_t))
            bucket = t_ns - t_ns % self.step_ns
            if self._bucket_start is not None and bucket != self._bucket_start:
                self._close_bucket()
            self._bucket_start = bucket
            self._bucket_t_sum += t_ns - bucket
            self._bucket_polls += 1
        self.fine_v[row, columns] = values
        self._bucket_sum[columns] += values
        self._bucket_tag_t_sum[columns] += t_ns % self.step_ns
        self._bucket_count[columns] += 1
        return len(columns)

    def _close_bucket(self) -> None:
        if self._bucket_start is None or not self._bucket_polls:
            return
        row = self._coarse_head
        self.coarse_t[row] = self._bucket_start + self._bucket_t_sum // self._bucket_polls
        counts = self._bucket_count
        present = counts > 0
        means = np.full(len(counts), np.nan)
        np.divide(self._bucket_sum, counts, out=means, where=present)
        self.coarse_v[row] = means
        offsets = np.full(len(counts), SHARED, dtype=OFFSET_DTYPE)
        partial = present & (counts != self._bucket_polls)
        if partial.any():
            mean_offset = self._bucket_tag_t_sum[partial] // counts[partial]  # in [0, step)
            offsets[partial] = mean_offset * QUANTA // self.step_ns
        self.coarse_off[row] = offsets
        self._coarse_head = (row + 1) % len(self.coarse_t)
        self._coarse_size = min(self._coarse_size + 1, len(self.coarse_t))
        self._clear_bucket()

    def _clear_bucket(self) -> None:
        self._bucket_sum[:] = 0.0
        self._bucket_tag_t_sum[:] = 0
        self._bucket_count[:] = 0
        self._bucket_t_sum = 0
        self._bucket_polls = 0

    def reset(self) -> None:
        """Forget every point (the columns stay: the tags are still known)."""
        self.last_ns = None
        self._fine_head = self._fine_size = 0
        self._coarse_head = self._coarse_size = 0
        self._bucket_start = None
        self._clear_bucket()

    def query(self, tag: str, since_ns: int) -> Series:
        column = self.columns[tag]
        fine = _ring_order(self._fine_head, self._fine_size, len(self.fine_t))
        coarse = _ring_order(self._coarse_head, self._coarse_size, len(self.coarse_t))
        fine_t, fine_v = self.fine_t[fine], self.fine_v[fine, column]
        coarse_t, coarse_v = self.coarse_t[coarse], self.coarse_v[coarse, column].astype(np.float64)
        latest = coarse_t.copy()  # the latest the mean time can be: the cut before the fine ring
        offsets = self.coarse_off[coarse, column]
        own = offsets != SHARED
        if own.any():  # the tag missed polls of these buckets: its own time, in the middle of its 255th
            start = coarse_t[own] - coarse_t[own] % self.step_ns
            quantum = offsets[own].astype(np.int64)
            coarse_t[own] = start + (2 * quantum + 1) * self.step_ns // (2 * QUANTA)
            latest[own] = start + (quantum + 1) * self.step_ns // QUANTA
        keep_coarse = (coarse_t >= since_ns) & ~np.isnan(coarse_v)
        if len(fine_t):  # a mean is shown only when all its readings are older than the raw points
            keep_coarse &= latest < fine_t[0]
        keep_fine = (fine_t >= since_ns) & ~np.isnan(fine_v)
        return Series(
            np.concatenate([coarse_t[keep_coarse], fine_t[keep_fine]]),
            np.concatenate([coarse_v[keep_coarse], fine_v[keep_fine]]),
        )

    @property
    def nbytes(self) -> int:
        """Bytes of every array this machine holds."""
        arrays = (
            self.fine_t,
            self.fine_v,
            self.coarse_t,
            self.coarse_v,
            self.coarse_off,
            self._bucket_sum,
            self._bucket_tag_t_sum,
            self._bucket_count,
        )
        return sum(a.nbytes for a in arrays)


def _widen(values: npt.NDArray[_Item], columns: int, fill: float) -> npt.NDArray[_Item]:
    """A copy of ``values`` with columns of ``fill`` added up to ``columns``."""
    wider: npt.NDArray[_Item] = np.full((values.shape[0], columns), fill, dtype=values.dtype)
    wider[:, : values.shape[1]] = values
    return wider


def numeric(sample: Sample) -> float | None:
    """The value to draw for a sample: good and finite numbers (bools as 0/1), else None."""
    if sample.quality is not Quality.GOOD or sample.value is None or isinstance(sample.value, str):
        return None
    value = float(sample.value)
    return value if math.isfinite(value) else None


class HistoryBuffer:
    """A sink keeping the last ``window`` of every numeric tag, the newest samples and machine states.

    The last ``fine_points`` polls of each machine as read (at a 1 s poll, the last 10 min) and
    one mean per ``coarse_step`` over ``window``. Memory: per tag ``8 * fine_points + 5 *
    (window / coarse_step)`` bytes (8.4 KB with the defaults; 21 KB when every tag kept its own
    times), plus ``8 * (fine_points + window / coarse_step)`` per machine for the times; at
    most ``max_series`` tags. ``memory_bytes`` is the exact size of those arrays.
    """

    name = "history"

    def __init__(
        self,
        window: float = 3600.0,
        fine_points: int = 600,
        coarse_step: float = 5.0,
        max_series: int = 5000,
    ) -> None:
        if window <= 0 or coarse_step <= 0 or fine_points < 1 or max_series < 1:
            raise ValueError("window, coarse_step, fine_points and max_series must be positive")
        self.window_ns = int(window * NS)
        self.step_ns = int(coarse_step * NS)
        self.fine_points = fine_points
        self.coarse_points = math.ceil(window / coarse_step) + 1
        self.max_series = max_series
        self.rejected_series = 0
        self.points_total = 0
        self._machines: dict[str, _MachineHistory] = {}
        self._series_count = 0
        self._latest: dict[str, dict[str, Sample]] = {}
        self._states: dict[str, MachineState] = {}
        self._full_logged = False

    async def start(self) -> None:
        """Nothing to prepare: the rings are made on first sight of a machine and its tags."""

    async def submit(self, batch: Batch, origin: Origin) -> None:
        """Remember the batch's samples: one row write per ring, no I/O."""
        latest = self._latest.setdefault(batch.machine, {})
        drawn: dict[str, float] = {}
        for sample in batch.samples:
            latest[sample.tag] = sample
            value = numeric(sample)
            if value is not None:
                drawn.setdefault(sample.tag, value)  # the same tag twice in a poll: the first
        if drawn:
            self._record(batch.machine, batch.polled_at_ns, drawn)

    def _record(self, machine: str, t_ns: int, drawn: dict[str, float]) -> None:
        history = self._machines.get(machine)
        if history is None:
            if self._series_count >= self.max_series:  # no room for any of its tags: no rings either
                self._reject(machine, list(drawn))
                return
            history = self._machines[machine] = _MachineHistory(self.fine_points, self.coarse_points, self.step_ns)
        new = [tag for tag in drawn if tag not in history.columns]
        if new:
            room = self.max_series - self._series_count
            if len(new) > room:
                self._reject(machine, new[room:])
                new = new[:room]
            if new:
                history.add_tags(new)
                self._series_count += len(new)
        columns = history.columns
        kept = [tag for tag in drawn if tag in columns]
        if not kept:
            return
        if history.last_ns is not None and t_ns < history.last_ns - self.window_ns:
            # The clock stepped back by more than the window: start the trends afresh rather
            # than ignore the machine until the clock catches up.
            log.warning("history: %s: the clock went back; its trends restarted", machine)
            history.reset()
        index = np.fromiter((columns[tag] for tag in kept), dtype=np.intp, count=len(kept))
        values = np.fromiter((drawn[tag] for tag in kept), dtype=np.float64, count=len(kept))
        self.points_total += history.add(t_ns, index, values)

    def _reject(self, machine: str, tags: list[str]) -> None:
        self.rejected_series += len(tags)
        if not self._full_logged:
            self._full_logged = True
            log.warning(
                "history: %d series kept already (max_series); %s.%s and further tags get no trend",
                self.max_series,
                machine,
                tags[0],
            )

    def machine_state_changed(self, origin: Origin, state: str, reason: str | None) -> None:
        """Keep the state with the wall-clock time it began, for "down since 10:42: reason"."""
        self._states[origin.machine] = MachineState(state, reason, time.time_ns())

    async def close(self) -> None:
        """Nothing to flush: the history lives only in memory (it is for looking, not keeping)."""

    # -- reading ---------------------------------------------------------------------------

    def machines(self) -> list[str]:
        """Machines seen in a batch or a state change, sorted."""
        return sorted(set(self._latest) | set(self._states))

    def tags(self, machine: str) -> list[str]:
        """Tags of a machine that had a sample, in the order of its batches."""
        return list(self._latest.get(machine, {}))

    def latest(self, machine: str) -> dict[str, Sample]:
        """The newest sample of every tag of the machine (any quality)."""
        return dict(self._latest.get(machine, {}))

    def state(self, machine: str) -> MachineState | None:
        """The machine's last reported state, or None before its first connect attempt ended."""
        return self._states.get(machine)

    def has_series(self, machine: str, tag: str) -> bool:
        """Whether the tag has had a numeric value to draw."""
        history = self._machines.get(machine)
        return history is not None and tag in history.columns

    def series(self, machine: str, tag: str, seconds: float | None = None, now_ns: int | None = None) -> Series:
        """Points of the last ``seconds`` (default: the whole window), oldest first; empty if unknown."""
        span = self.window_ns if seconds is None else min(int(seconds * NS), self.window_ns)
        since = (time.time_ns() if now_ns is None else now_ns) - span
        history = self._machines.get(machine)
        if history is None or tag not in history.columns:
            return Series(np.zeros(0, dtype=np.int64), np.zeros(0, dtype=np.float64))
        return history.query(tag, since)

    @property
    def series_count(self) -> int:
        """How many tag series are kept."""
        return self._series_count

    @property
    def memory_bytes(self) -> int:
        """Bytes held by the rings and the open buckets' sums (the bound the docstring promises)."""
        return sum(history.nbytes for history in self._machines.values())
