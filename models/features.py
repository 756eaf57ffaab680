"""Sliding feature windows over one machine's good samples. Pure numpy, no I/O.

A detector never sees raw samples: it sees one feature vector per window, so a model is the
same whether the machine is polled every 100 ms or every 5 s, and one odd sample cannot raise
an alert on its own. Each window gives, per signal, the statistics in ``STATS`` (mean, std,
RMS, peak-to-peak, kurtosis, crest factor, slope per second) and two pieces of context
(``CONTEXT``): the signal's exponentially weighted means over the last ``CONTEXT_TAUS`` (10 and
30 min) of samples, in every state. Temperatures follow load through thermal lags of that order,
so with the recent mean current a model can tell "hot because it worked hard" from "hot because
cooling failed" (``models.levels`` turns the context into that residual; detectors never see the
slow means themselves, which would keep an alert open long after a fault).

Gaps are explicit: a window with too few samples (the connection dropped, a tag went bad) is
skipped and counted in ``Windower.skipped``, never filled in. "Too few" is less than
``min_fill`` of what the window would hold at the median sample interval seen inside it, or
fewer than ``min_samples`` in any signal.
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass, field

import numpy as np
import numpy.typing as npt

from edge_agent.core.errors import ModelError

FloatArray = npt.NDArray[np.float64]

STATS: tuple[str, ...] = ("mean", "std", "rms", "p2p", "kurtosis", "crest", "slope")
"""Per-signal statistics of the window's own samples."""
CONTEXT_TAUS: tuple[float, ...] = (600.0, 1800.0)
"""Time constants (s) of the slow means carried as context."""
CONTEXT: tuple[str, ...] = ("ewm10m", "ewm30m")
"""Names of the slow means, one per ``CONTEXT_TAUS``."""
WARMUP_S = CONTEXT_TAUS[-1]
"""A slow mean is NaN (unknown) until it has run this long: right after a start it is just the
first reading, and a model comparing it with the load would see a fault in every cold start."""
RESTART_GAP_S = CONTEXT_TAUS[0]
"""Rows further apart than this restart the slow means (and their warm-up)."""
FEATURES: tuple[str, ...] = STATS + CONTEXT
"""Per-signal window features, in column order within each signal's block."""


@dataclass(frozen=True, slots=True)
class WindowSpec:
    """How to cut windows: ``length_s`` long, a new one every ``hop_s`` (overlap when hop < length)."""

    length_s: float = 60.0
    hop_s: float = 30.0
    min_fill: float = 0.8
    min_samples: int = 5

    def __post_init__(self) -> None:
        if not self.length_s > 0 or not self.hop_s > 0:
            raise ModelError(f"window length and hop must be positive (got {self.length_s} s, {self.hop_s} s)")
        if not 0 < self.min_fill <= 1:
            raise ModelError(f"min_fill must be in (0, 1] (got {self.min_fill})")
        if self.min_samples < 3:
            raise ModelError(f"min_samples must be at least 3 for kurtosis and slope (got {self.min_samples})")


def feature_names(signals: list[str] | tuple[str, ...]) -> list[str]:
    """Column names of a feature vector: ``signal:feature``, signal-major."""
    return [f"{s}:{f}" for s in signals for f in FEATURES]


def signal_features(t_s: FloatArray, x: FloatArray) -> FloatArray:
    """The features of one signal over one window; ``x`` holds finite values only."""
    mean = float(x.mean())
    dev = x - mean
    var = float(np.mean(dev * dev))
    std = var**0.5
    rms = float(np.sqrt(np.mean(x * x)))
    p2p = float(x.max() - x.min())
    # Pearson kurtosis (3 for a normal distribution); a flat signal has none, call it 0.
    kurt = float(np.mean(dev**4) / (var * var)) if var > 1e-24 else 0.0
    peak = float(np.max(np.abs(x)))
    crest = peak / rms if rms > 1e-12 else 1.0
    tc = t_s - t_s.mean()
    denom = float(np.dot(tc, tc))
    slope = float(np.dot(tc, dev) / denom) if denom > 0 else 0.0
    return np.array([mean, std, rms, p2p, kurt, crest, slope])


def window_features(t_s: FloatArray, values: FloatArray, context: FloatArray) -> FloatArray:
    """Features of one window: ``values[i, j]`` is signal j at ``t_s[i]``; NaN = no good reading.

    ``context[k, j]`` is signal j's slow mean at time constant ``CONTEXT_TAUS[k]``.
    """
    width, n_stats = len(FEATURES), len(STATS)
    out = np.empty(values.shape[1] * width)
    for j in range(values.shape[1]):
        col = values[:, j]
        ok = np.isfinite(col)
        out[j * width : j * width + n_stats] = signal_features(t_s[ok], col[ok])
        out[j * width + n_stats : (j + 1) * width] = context[:, j]
    return out


@dataclass(frozen=True, slots=True)
class Window:
    """One scored unit: a feature vector, the time span it covers and the operating state in it.

    ``state`` is the one state held through the whole window, or ``"mixed"`` when the machine
    changed state inside it (such a window is neither learned nor scored: a start-up transient
    is not a fault).
    """

    start_s: float
    end_s: float
    features: FloatArray
    n_samples: int
    state: str


@dataclass(slots=True)
class Windower:
    """Streaming windows for one machine: push rows in time order, get finished windows back.

    Memory is bounded by one window of rows. Rows older than the newest are dropped and counted
    (``out_of_order``): a source timestamp that jumps back is a clock problem, not a feature.
    """

    spec: WindowSpec
    n_signals: int
    skipped: int = 0
    out_of_order: int = 0
    emitted: int = 0
    _rows: deque[tuple[float, FloatArray, str]] = field(default_factory=deque)
    _next_end: float | None = None
    _last_t: float | None = None
    _ewm: FloatArray | None = None
    _ewm_t: float | None = None
    _since: FloatArray | None = None
    _dt: float = -1.0
    _alpha: FloatArray = field(default_factory=lambda: np.zeros((len(CONTEXT_TAUS), 1)))
    _taus: FloatArray = field(default_factory=lambda: np.array(CONTEXT_TAUS)[:, None])

    def push(self, t_s: float, row: FloatArray, state: str) -> list[Window]:
        """Add one row (NaN for a signal without a good reading); return windows that closed."""
        if self._last_t is not None and t_s <= self._last_t:
            self.out_of_order += 1
            return []
        self._last_t = t_s
        if self._next_end is None:
            self._next_end = t_s + self.spec.length_s
        done: list[Window] = []
        while t_s >= self._next_end:
            done.extend(self._close(self._next_end))
            self._next_end += self.spec.hop_s
        self._rows.append((t_s, row, state))
        self._update_context(t_s, row)
        return done

    def _update_context(self, t_s: float, row: FloatArray) -> None:
        """Advance the slow means by the time since the last row; a missing reading keeps its mean.

        They survive ``reset`` (a short drop-out does not cost a warm-up); rows more than
        ``RESTART_GAP_S`` apart restart them. ``_since`` is when each signal's means (re)started.
        """
        if self._ewm is None or self._ewm_t is None or self._since is None or t_s - self._ewm_t > RESTART_GAP_S:
            self._ewm = np.tile(row, (len(CONTEXT_TAUS), 1)).astype(np.float64)
            self._since = np.where(np.isfinite(row), t_s, np.inf)
            self._ewm_t = t_s
            return
        dt = t_s - self._ewm_t
        if dt != self._dt:  # polls at a steady interval: one exp per interval change, not per row
            self._dt = dt
            self._alpha = 1.0 - np.exp(-dt / self._taus)
        ewm = self._ewm
        if np.isfinite(row.sum() + ewm[0].sum()):  # the usual case, every reading good: no masks
            ewm += self._alpha * (row - ewm)
        else:
            ok = np.isfinite(row)
            fresh = ok & ~np.isfinite(ewm[0])
            ewm[:, fresh] = row[fresh]
            self._since[fresh] = t_s
            ewm[:, ok] += self._alpha * (row[ok] - ewm[:, ok])
        self._ewm_t = t_s

    def context(self, t_s: float) -> FloatArray:
        """The slow means at ``t_s``; NaN for a signal still warming up."""
        if self._ewm is None or self._since is None:
            return np.full((len(CONTEXT_TAUS), self.n_signals), np.nan)
        return np.where(t_s - self._since >= WARMUP_S, self._ewm, np.nan)

    def reset(self) -> None:
        """Forget the partial window (the machine went away): the next row starts a new one."""
        self._rows.clear()
        self._next_end = None
        self._last_t = None

    def _close(self, end: float) -> list[Window]:
        start = end - self.spec.length_s
        while self._rows and self._rows[0][0] < start:
            self._rows.popleft()
        rows = [r for r in self._rows if r[0] < end]
        window = make_window(rows, start, end, self.spec, self.context(end))
        if window is None:
            self.skipped += 1
            return []
        self.emitted += 1
        return [window]


def make_window(
    rows: list[tuple[float, FloatArray, str]], start: float, end: float, spec: WindowSpec, context: FloatArray
) -> Window | None:
    """A window from its rows, or None when it has too few samples (slow means may be NaN: warming up)."""
    if len(rows) < spec.min_samples:
        return None
    t = np.fromiter((r[0] for r in rows), dtype=np.float64, count=len(rows))
    values = np.vstack([r[1] for r in rows])
    if not enough(t, values, spec):
        return None
    states = {r[2] for r in rows}
    state = states.pop() if len(states) == 1 else "mixed"
    return Window(start, end, window_features(t, values, context), len(rows), state)


def enough(t: FloatArray, values: FloatArray, spec: WindowSpec) -> bool:
    """Whether each signal has at least ``min_fill`` of the samples the window should hold."""
    if len(t) < 2:
        return False
    dt = float(np.median(np.diff(t)))
    expected = spec.length_s / dt if dt > 0 else float(len(t))
    need = max(spec.min_samples, int(np.ceil(spec.min_fill * expected)))
    counts = np.isfinite(values).sum(axis=0)
    return bool(counts.min() >= need)


@dataclass(frozen=True, slots=True)
class WindowSet:
    """Windows of a whole recording as arrays: ``features[i]`` covers ``start_s[i]..end_s[i]``."""

    features: FloatArray
    start_s: FloatArray
    end_s: FloatArray
    state: list[str]
    skipped: int


def windows_from_arrays(
    time_s: FloatArray,
    values: FloatArray,
    spec: WindowSpec,
    state: list[str] | npt.NDArray[np.str_] | None = None,
) -> WindowSet:
    """Cut a whole recording (offline training and evaluation) exactly as the streaming windower does."""
    if values.ndim != 2 or len(time_s) != len(values):
        raise ModelError(f"values must be rows x signals matching time_s (got {values.shape} and {len(time_s)} times)")
    n = values.shape[1]
    w = Windower(spec, n)
    states = ["running"] * len(time_s) if state is None else [str(s) for s in state]
    out: list[Window] = []
    for i in range(len(time_s)):
        out.extend(w.push(float(time_s[i]), values[i], states[i]))
    width = n * len(FEATURES)
    feats = np.vstack([x.features for x in out]) if out else np.empty((0, width))
    return WindowSet(
        feats,
        np.array([x.start_s for x in out]),
        np.array([x.end_s for x in out]),
        [x.state for x in out],
        w.skipped,
    )
