"""The recent normal windows a scheduled retrain learns from, in a ring file instead of RSS.

With ``retrain_every`` set, each machine keeps its last ``retrain_on`` (default ``learn_after``)
of normal windows: 2,880 at the defaults (24 h, a window every 30 s). Kept as ``Window``
objects that was 2,880 x 1,000 x 9 x 8 bytes, about 200 MB for 1,000 tags, for as long as the
agent runs: twice its whole footprint budget (docs/models.md, Footprint). Here each window's times, sample count
and state stay in compact arrays (about 32 bytes a window) and its feature vector goes to
``<machine folder>/recent.f64``, a ring of ``capacity`` rows of raw float64 (native byte order)
that never grows past ``capacity x width x 8`` bytes: the newest window overwrites the oldest.
Features are written a chunk at a time (64 KiB; see ``training.FeatureFile``) on the alert
engine's worker thread, never on the event loop, and read back in order only when a retrain is
due. When an alert is raised, the windows that led up to it are dropped again (``drop_newest``):
a model must not learn the start of a fault as normal.

If the file cannot be written (disk full, read-only folder) the windows are kept in memory, as
before, with one warning that says where and why: retraining never stops for a disk problem.
A file left by an earlier run is never read: the ring starts empty and replaces it.
"""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np

from edge_agent.alerts.training import FeatureFile, FloatArray, chunk_rows, feature_row, warn_in_memory
from edge_agent.core.errors import ModelError
from models.features import Window

log = logging.getLogger(__name__)

RECENT_FILE = "recent.f64"


class RecentWindows:
    """A bounded, ordered ring of windows: features in a file, times and states in compact arrays."""

    def __init__(self, path: Path, capacity: int) -> None:
        if capacity < 1:
            raise ValueError(f"a ring of recent windows needs room for at least one window, not {capacity}")
        self.path = path
        self.capacity = capacity
        self._file = FeatureFile(path)
        self._start = np.zeros(capacity)
        self._end = np.zeros(capacity)
        self._samples = np.zeros(capacity, dtype=np.int64)
        self._states: list[str] = [""] * capacity
        self._width: int | None = None
        self._first = 0  # slot of the oldest window
        self._count = 0
        self._pending: list[FloatArray] = []  # features of the newest windows, not yet in the file
        self._memory: list[FloatArray | None] | None = None  # features by slot, once the file failed

    def __len__(self) -> int:
        return self._count

    @property
    def on_disk(self) -> bool:
        """Whether the features go to the file (False after a write failed)."""
        return self._memory is None

    def counts(self) -> dict[str, int]:
        """Windows kept per operating state (a retrain learns per state)."""
        counts: dict[str, int] = {}
        for slot in self._slots():
            counts[self._states[slot]] = counts.get(self._states[slot], 0) + 1
        return counts

    def append(self, window: Window) -> None:
        """Keep ``window`` as the newest; when full, the oldest is forgotten."""
        row = feature_row(window, self._width)
        self._width = row.size
        if self._count == self.capacity:  # the oldest is in the file: fewer pending rows than slots
            self._first = (self._first + 1) % self.capacity
            self._count -= 1
        slot = self._slot(self._count)
        self._start[slot] = window.start_s
        self._end[slot] = window.end_s
        self._samples[slot] = window.n_samples
        self._states[slot] = window.state
        self._count += 1
        if self._memory is not None:
            self._memory[slot] = row
            return
        self._pending.append(row)
        if len(self._pending) >= min(chunk_rows(row.size), self.capacity):
            self._write_pending()

    def drop_newest(self, k: int) -> None:
        """Forget the ``k`` newest windows (all of them if there are fewer)."""
        k = max(0, min(k, self._count))
        if self._memory is not None:
            for i in range(self._count - k, self._count):
                self._memory[self._slot(i)] = None
        self._count -= k
        del self._pending[max(0, len(self._pending) - k) :]  # the file's rows are overwritten later

    def windows(self) -> list[Window]:
        """Every window kept, oldest first (the ring keeps them); ModelError if the file fails."""
        try:
            rows = self._rows()
        except (OSError, ValueError) as exc:
            self.clear()
            raise ModelError(
                f"{self.path}: recent windows cannot be read back ({exc}); collecting them afresh"
            ) from exc
        return [
            Window(float(self._start[s]), float(self._end[s]), rows[i], int(self._samples[s]), self._states[s])
            for i, s in enumerate(self._slots())
        ]

    def clear(self) -> None:
        """Forget every window and delete the file."""
        self._file.delete()
        self._first = 0
        self._count = 0
        self._width = None
        self._pending = []
        if self._memory is not None:
            self._memory = [None] * self.capacity

    # -- slots and the file ----------------------------------------------------------------------

    def _slot(self, i: int) -> int:
        """The slot of the ``i``-th oldest window."""
        return (self._first + i) % self.capacity

    def _slots(self) -> list[int]:
        return [self._slot(i) for i in range(self._count)]

    def _rows(self) -> FloatArray:
        """All features, oldest first, as one array."""
        if self._memory is None:
            return self._read(pending=self._pending)
        out = np.empty((self._count, self._width or 0))
        for i, s in enumerate(self._slots()):
            row = self._memory[s]
            assert row is not None
            out[i] = row
        return out

    def _read(self, pending: list[FloatArray]) -> FloatArray:
        """The file's windows (all but the ``pending`` newest), then ``pending``: one read per run of slots."""
        out = np.empty((self._count, self._width or 0))
        in_file = self._count - len(pending)
        head = min(in_file, self.capacity - self._first)  # up to the end of the ring, then on from slot 0
        self._file.read(self._first, out[:head])
        self._file.read(0, out[head:in_file])
        for i, row in enumerate(pending):
            out[in_file + i] = row
        return out

    def _write_pending(self) -> None:
        """Write the pending features to their slots (two writes when they wrap); on failure go to memory."""
        at = self._slot(self._count - len(self._pending))
        head = min(len(self._pending), self.capacity - at)
        try:
            self._file.write(at, self._pending[:head])
            self._file.write(0, self._pending[head:])
        except OSError as exc:
            self._to_memory(exc)
        else:
            self._pending = []

    def _to_memory(self, exc: OSError) -> None:
        """The file failed: carry on in memory with what it holds so far."""
        warn_in_memory(self.path, exc, "recent normal windows (for scheduled retraining)", self._width)
        pending, self._pending = self._pending, []
        try:
            rows = list(self._read(pending))
        except (OSError, ValueError) as again:
            log.warning("alerts: %s cannot be read back either (%s); keeping the newest windows only", self.path, again)
            self._first = self._slot(self._count - len(pending))
            self._count = len(pending)
            rows = pending
        self._file.delete()  # what it held is in memory now: give the space back (a full disk needs it)
        self._memory = [None] * self.capacity
        for i, row in enumerate(rows):
            self._memory[self._slot(i)] = row
