"""Training windows on disk while a machine collects its normal, so learning costs no RSS.

A machine learns after ``learn_after`` of good running data: with the defaults (24 h, a window
every 30 s) that is 2,880 windows of 9 features per signal. Held in memory as ``Window``
objects, 1,000 tags took 2,880 x 1,000 x 9 x 8 bytes, about 200 MB, before the first model,
twice the agent's whole footprint budget (docs/models.md, Footprint). Here only each window's times, sample count
and state stay in memory (about 40 bytes); its feature vector is appended to
``<machine folder>/training.f64`` (raw float64, native byte order) in chunks of 64 KiB, read
back once when the model is learned, and the file is deleted. The writes happen on the alert
engine's worker thread, never on the event loop; about 3.5 KB per machine every hop, and only
until the first model is in.

If the file cannot be written (disk full, read-only folder) the windows are kept in memory as
before, with one warning that says where and why: learning never stops for a disk problem.
A file left by an earlier run is never read (training starts afresh after a restart, as it
always did) and is replaced on the first window.

``FeatureFile`` (rows of features at fixed places in one file) and ``feature_row`` are shared
with the ring of recent normal windows that scheduled retraining learns from
(edge_agent/alerts/recent.py).
"""

from __future__ import annotations

import contextlib
import logging
from array import array
from pathlib import Path

import numpy as np
import numpy.typing as npt

from edge_agent.core.errors import ModelError
from models.features import Window

log = logging.getLogger(__name__)

TRAINING_FILE = "training.f64"
CHUNK_BYTES = 64 * 1024  # features gathered before a write: 18 windows of 432 features
FloatArray = npt.NDArray[np.float64]


def feature_row(window: Window, width: int | None) -> FloatArray:
    """The window's features as one float64 row (a copy: the caller's array may change)."""
    row = np.array(window.features, dtype=np.float64).ravel()
    if width is not None and row.size != width:
        raise ValueError(f"a window of {row.size} features after windows of {width}")
    return row


def chunk_rows(width: int) -> int:
    """Windows gathered before a write: a chunk at a time, not a window at a time.

    Every write lets the event loop's thread take the GIL for up to a switch interval, and the
    worker must keep up with the polls.
    """
    return max(1, -(-CHUNK_BYTES // (8 * width)))


def warn_in_memory(path: Path, exc: OSError, what: str, width: int | None) -> None:
    """The one warning when a feature file fails and its windows stay in memory instead."""
    log.warning(
        "alerts: cannot write %s to %s (%s); keeping them in memory instead "
        "(about %d bytes per window). Fix: free disk space or make the alerts data_dir writable",
        what,
        path,
        exc,
        8 * (width or 0),
    )


class FeatureFile:
    """Feature rows of one width at fixed places (row ``i`` at byte ``8 * width * i``) in one file.

    The first write of this object replaces whatever file is there: one from an earlier run is
    never trusted. No handle is held between writes. Errors are ``OSError`` (and ``ValueError``
    for a file shorter than it should be); the callers decide what a failure means.
    """

    def __init__(self, path: Path) -> None:
        self.path = path
        self._ours = False  # this object (re)created the file since the last delete

    def write(self, at: int, rows: list[FloatArray]) -> None:
        """Write ``rows`` as rows ``at``, ``at + 1``, ... of the file."""
        if not rows:
            return
        if not self._ours:
            self.path.parent.mkdir(parents=True, exist_ok=True)
        with self.path.open("r+b" if self._ours else "wb") as file:
            file.seek(at * rows[0].nbytes)
            file.write(b"".join(row.tobytes() for row in rows))
        self._ours = True

    def read(self, at: int, out: FloatArray) -> None:
        """Fill ``out`` (rows x width, C order) with the file's rows from ``at`` on."""
        if out.size == 0:
            return
        if not self._ours:
            raise ValueError("nothing was written to it by this run")
        with self.path.open("rb") as file:
            file.seek(at * out.itemsize * out.shape[-1])
            got = file.readinto(out.data)
        if got != out.nbytes:
            raise ValueError(f"{got // (out.itemsize * out.shape[-1])} of {out.shape[0]} windows in the file")

    def delete(self) -> None:
        """Remove the file (if the folder is unusable no file was written either)."""
        self._ours = False
        with contextlib.suppress(OSError):
            self.path.unlink(missing_ok=True)


class TrainingBuffer:
    """Windows waiting to be learned: features in a file, times and states in compact arrays."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._file = FeatureFile(path)
        self._start = array("d")
        self._end = array("d")
        self._samples = array("q")
        self._states: list[str] = []
        self._counts: dict[str, int] = {}
        self._width: int | None = None
        self._in_file = 0  # windows whose features are in the file
        self._pending: list[FloatArray] = []  # features not yet written (less than a chunk)
        self._memory: list[FloatArray] | None = None  # every window's features, once the file failed

    def __len__(self) -> int:
        return len(self._states)

    @property
    def counts(self) -> dict[str, int]:
        """Windows kept per operating state (what the trainer counts: it learns per state)."""
        return self._counts

    @property
    def on_disk(self) -> bool:
        """Whether the features go to the file (False after a write failed)."""
        return self._memory is None

    def append(self, window: Window) -> None:
        """Keep one window (its features go to the file, a chunk at a time)."""
        row = feature_row(window, self._width)
        self._width = row.size
        self._start.append(window.start_s)
        self._end.append(window.end_s)
        self._samples.append(window.n_samples)
        self._states.append(window.state)
        self._counts[window.state] = self._counts.get(window.state, 0) + 1
        if self._memory is not None:
            self._memory.append(row)
            return
        self._pending.append(row)
        if len(self._pending) >= chunk_rows(row.size):
            self._write_pending()

    def take(self) -> list[Window]:
        """All windows kept so far, oldest first; the buffer is empty (and the file gone) afterwards."""
        count = len(self)
        if self._memory is not None:
            rows = self._memory
        else:
            try:
                rows = self._read_file() + self._pending
            except (OSError, ValueError) as exc:
                self.clear()
                raise ModelError(f"{self.path}: training windows cannot be read back ({exc}); learning afresh") from exc
        windows = [
            Window(self._start[i], self._end[i], rows[i], self._samples[i], self._states[i]) for i in range(count)
        ]
        self.clear()
        return windows

    def clear(self) -> None:
        """Forget every window and delete the file."""
        self._file.delete()
        self._start = array("d")
        self._end = array("d")
        self._samples = array("q")
        self._states = []
        self._counts = {}
        self._width = None
        self._in_file = 0
        self._pending = []
        if self._memory is not None:
            self._memory = []

    def _write_pending(self) -> None:
        """Append the pending features to the file; on failure carry on in memory."""
        try:
            self._file.write(self._in_file, self._pending)
        except OSError as exc:
            self._to_memory(exc)
        else:
            self._in_file += len(self._pending)
            self._pending = []

    def _read_file(self) -> list[FloatArray]:
        rows = np.empty((self._in_file, self._width or 0))
        self._file.read(0, rows)
        return list(rows)

    def _to_memory(self, exc: OSError) -> None:
        """The file failed: carry on in memory with what it holds so far."""
        warn_in_memory(self.path, exc, "training windows", self._width)
        try:
            kept = self._read_file()
        except (OSError, ValueError) as again:
            log.warning("alerts: %s cannot be read back either (%s); training restarts", self.path, again)
            pending = self._pending[-1:]  # keep the newest window only, with its times and state
            last = len(self) - 1
            self._start, self._end = array("d", self._start[last:]), array("d", self._end[last:])
            self._samples, self._states = array("q", self._samples[last:]), self._states[last:]
            self._counts = dict.fromkeys(self._states, 1)
            self._pending = pending
            kept = []
        self._memory = kept + self._pending
        self._pending = []
        self._in_file = 0
