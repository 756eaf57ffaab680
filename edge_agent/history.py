"""The last hour of every numeric tag, in memory, for the status page's trend charts.

``HistoryBuffer`` is a sink: the pollers hand it every batch like the MQTT publisher. It keeps,
per machine and tag, two fixed-size numpy rings, so memory is bounded by tags x points and does
not grow with uptime (invariant 4):

* a *fine* ring with the newest raw points (the last few minutes at full poll rate), and
* a *coarse* ring of 5 s means covering the whole hour.

A query returns coarse points up to where the fine ring begins, then the fine points, so a
chart is exact for the recent minutes and smooth beyond. Only good, finite numeric values go
into the rings (a bad reading has no value to draw; booleans become 0/1). Points are placed at
the time the agent read them (``Batch.polled_at_ns``, the agent's clock), not the machine's
source timestamp: a PLC whose clock is an hour off must still draw a trend of the last hour.
Two reads at the same instant are one point. The newest sample
of every tag (any quality, with its reason) and every machine's connection state with its
reason and since-when are kept too, so the page can say *why* a value is missing.

Everything runs on the event loop and ``submit`` is a few array writes per tag, so the poll
loop is never delayed. The number of series is capped (``max_series``); tags beyond the cap are
counted in ``rejected_series`` and logged once, never silently grown.
"""

from __future__ import annotations

import logging
import math
import time
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from edge_agent.payloads import Origin
from edge_agent.samples import Batch, Quality, Sample

log = logging.getLogger(__name__)

NS = 1_000_000_000

Floats = npt.NDArray[np.float64]


@dataclass(frozen=True, slots=True)
class MachineState:
    """A machine's link as last reported by its poller: ``up`` / ``down`` with the reason."""

    state: str
    reason: str | None
    since_ns: int


@dataclass(frozen=True, slots=True)
class Series:
    """Points of one tag, oldest first: UTC nanoseconds (when the agent read them) and values."""

    times_ns: npt.NDArray[np.int64]
    values: Floats

    def __len__(self) -> int:
        return len(self.times_ns)


class _Ring:
    """A fixed-capacity ring of (time, value) points; appends overwrite the oldest when full."""

    __slots__ = ("_head", "_size", "times", "values")

    def __init__(self, capacity: int) -> None:
        self.times = np.zeros(capacity, dtype=np.int64)
        self.values = np.zeros(capacity, dtype=np.float64)
        self._head = 0  # next write position
        self._size = 0

    def __len__(self) -> int:
        return self._size

    def append(self, t_ns: int, value: float) -> None:
        self.times[self._head] = t_ns
        self.values[self._head] = value
        self._head = (self._head + 1) % len(self.times)
        self._size = min(self._size + 1, len(self.times))

    def oldest_ns(self) -> int | None:
        if not self._size:
            return None
        return int(self.times[(self._head - self._size) % len(self.times)])

    def ordered(self) -> tuple[npt.NDArray[np.int64], Floats]:
        """Copies in time order (the caller may keep them while the ring moves on)."""
        start = (self._head - self._size) % len(self.times)
        index = (np.arange(self._size) + start) % len(self.times)
        return self.times[index], self.values[index]

    def clear(self) -> None:
        self._head = self._size = 0


class _TagHistory:
    """Fine ring of raw points plus coarse ring of per-bucket means for one tag."""

    __slots__ = (
        "_bucket_count",
        "_bucket_start",
        "_bucket_sum",
        "_bucket_t_sum",
        "coarse",
        "fine",
        "last_ns",
        "step_ns",
    )

    def __init__(self, fine_points: int, coarse_points: int, step_ns: int) -> None:
        self.fine = _Ring(fine_points)
        self.coarse = _Ring(coarse_points)
        self.step_ns = step_ns
        self.last_ns: int | None = None
        self._bucket_start: int | None = None
        self._bucket_sum = 0.0
        self._bucket_t_sum = 0
        self._bucket_count = 0

    def add(self, t_ns: int, value: float) -> bool:
        """Record a point; False when it is not newer than the last one (the same poll twice)."""
        if self.last_ns is not None and t_ns <= self.last_ns:
            return False
        self.last_ns = t_ns
        self.fine.append(t_ns, value)
        bucket = t_ns - t_ns % self.step_ns
        if self._bucket_start is not None and bucket != self._bucket_start:
            self._flush_bucket()
        self._bucket_start = bucket
        self._bucket_sum += value
        self._bucket_t_sum += t_ns - bucket
        self._bucket_count += 1
        return True

    def _flush_bucket(self) -> None:
        if self._bucket_start is not None and self._bucket_count:
            mean_t = self._bucket_start + self._bucket_t_sum // self._bucket_count
            self.coarse.append(mean_t, self._bucket_sum / self._bucket_count)
        self._bucket_sum = 0.0
        self._bucket_t_sum = 0
        self._bucket_count = 0

    def reset(self) -> None:
        self.fine.clear()
        self.coarse.clear()
        self.last_ns = None
        self._bucket_start = None
        self._bucket_sum = 0.0
        self._bucket_t_sum = 0
        self._bucket_count = 0

    def query(self, since_ns: int) -> Series:
        fine_t, fine_v = self.fine.ordered()
        coarse_t, coarse_v = self.coarse.ordered()
        fine_from = int(fine_t[0]) if len(fine_t) else None
        keep_coarse = coarse_t >= since_ns
        if fine_from is not None:
            keep_coarse &= coarse_t < fine_from
        keep_fine = fine_t >= since_ns
        return Series(
            np.concatenate([coarse_t[keep_coarse], fine_t[keep_fine]]),
            np.concatenate([coarse_v[keep_coarse], fine_v[keep_fine]]),
        )


def numeric(sample: Sample) -> float | None:
    """The value to draw for a sample: good and finite numbers (bools as 0/1), else None."""
    if sample.quality is not Quality.GOOD or sample.value is None or isinstance(sample.value, str):
        return None
    value = float(sample.value)
    return value if math.isfinite(value) else None


class HistoryBuffer:
    """A sink keeping the last ``window`` of every numeric tag, the newest samples and machine states.

    ``fine_points`` raw points per tag (at a 1 s poll, the last 10 min) and one mean per
    ``coarse_step`` over ``window``. Memory: about ``16 * (fine_points + window / coarse_step)``
    bytes per tag, 21 KB with the defaults; at most ``max_series`` tags.
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
        self._series: dict[tuple[str, str], _TagHistory] = {}
        self._latest: dict[str, dict[str, Sample]] = {}
        self._states: dict[str, MachineState] = {}
        self._full_logged = False

    async def start(self) -> None:
        """Nothing to prepare: the rings are made on first sight of a tag."""

    async def submit(self, batch: Batch, origin: Origin) -> None:
        """Remember the batch's samples: a few array writes per tag, no I/O."""
        latest = self._latest.setdefault(batch.machine, {})
        t_ns = batch.polled_at_ns
        for sample in batch.samples:
            latest[sample.tag] = sample
            value = numeric(sample)
            if value is None:
                continue
            series = self._series_for(batch.machine, sample.tag)
            if series is None:
                continue
            if series.last_ns is not None and t_ns < series.last_ns - self.window_ns:
                # The clock stepped back by more than the window: start the trend afresh rather
                # than ignore the machine until the clock catches up.
                log.warning("history: %s.%s: the clock went back; trend restarted", batch.machine, sample.tag)
                series.reset()
            if series.add(t_ns, value):
                self.points_total += 1

    def machine_state_changed(self, origin: Origin, state: str, reason: str | None) -> None:
        """Keep the state with the wall-clock time it began, for "down since 10:42: reason"."""
        self._states[origin.machine] = MachineState(state, reason, time.time_ns())

    async def close(self) -> None:
        """Nothing to flush: the history lives only in memory (it is for looking, not keeping)."""

    def _series_for(self, machine: str, tag: str) -> _TagHistory | None:
        key = (machine, tag)
        series = self._series.get(key)
        if series is None:
            if len(self._series) >= self.max_series:
                self.rejected_series += 1
                if not self._full_logged:
                    self._full_logged = True
                    log.warning(
                        "history: %d series kept already (max_series); %s.%s and further tags get no trend",
                        self.max_series,
                        machine,
                        tag,
                    )
                return None
            series = _TagHistory(self.fine_points, self.coarse_points, self.step_ns)
            self._series[key] = series
        return series

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
        return (machine, tag) in self._series

    def series(self, machine: str, tag: str, seconds: float | None = None, now_ns: int | None = None) -> Series:
        """Points of the last ``seconds`` (default: the whole window), oldest first; empty if unknown."""
        span = self.window_ns if seconds is None else min(int(seconds * NS), self.window_ns)
        since = (time.time_ns() if now_ns is None else now_ns) - span
        history = self._series.get((machine, tag))
        if history is None:
            return Series(np.zeros(0, dtype=np.int64), np.zeros(0, dtype=np.float64))
        return history.query(since)

    @property
    def series_count(self) -> int:
        """How many tag series are kept."""
        return len(self._series)

    @property
    def memory_bytes(self) -> int:
        """Bytes held by the rings (the bound the docstring promises)."""
        per_series = 16 * (self.fine_points + self.coarse_points)
        return per_series * len(self._series)
