"""Alert thresholds from a false-alarm budget, not from a number someone guessed.

An alert is raised when k of the last n windows exceed the threshold, so what must stay rare is
not one high window (kurtosis of a window that holds one load step is high, and harmless) but
the k-th highest score of n consecutive windows. ``calibrate`` therefore works on that rolling
statistic, computed on normal windows the detector did not learn from, which also accounts for
overlapping windows being correlated.

The budget B alerts per day with W windows per day asks for the statistic to exceed the
threshold in at most a fraction p = B / W of windows. That is far beyond what a day of data
can resolve directly (1 in 5760 for 0.5/day at a 30 s hop), so the tail is extrapolated: above
its 90th percentile u the statistic is modelled as exponential (peaks over threshold), with
scale beta = mean excess over u, giving ``u + beta * ln(0.1 / p)``. A margin then widens the
distance from the typical score for what training did not see (another season, new material).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from edge_agent.core.errors import ModelError

TAIL_FROM = 0.9
"""Quantile above which the tail is modelled."""
MIN_SCORES = 10
"""Normal scores a threshold is calibrated on at least."""


@dataclass(frozen=True, slots=True)
class Threshold:
    """The alert threshold and how it was chosen. ``typical`` is the median normal score."""

    value: float
    typical: float
    quantile: float
    margin: float
    n_scores: int

    def level(self, score: float) -> float:
        """0 = a typical window, 1 = at the threshold: comparable across detectors and machines."""
        span = self.value - self.typical
        return (score - self.typical) / span if span > 0 else (0.0 if score <= self.value else math.inf)


def rolling_kth(scores: npt.NDArray[np.float64], k: int, n: int) -> npt.NDArray[np.float64]:
    """The k-th highest of each run of n consecutive scores (what the k-of-n rule compares)."""
    if len(scores) < n:
        return np.sort(scores)[::-1][min(k, len(scores)) - 1 : min(k, len(scores))]
    runs = np.lib.stride_tricks.sliding_window_view(scores, n)
    return np.sort(runs, axis=1)[:, n - k]


def calibrate(
    scores: npt.NDArray[np.float64],
    windows_per_day: float,
    false_alarms_per_day: float,
    *,
    k: int = 1,
    n: int = 1,
    margin: float = 1.25,
) -> Threshold:
    """Threshold on the rolling k-of-n statistic of normal ``scores`` (in time order) for the budget."""
    scores = np.asarray(scores, dtype=np.float64)
    if len(scores) < MIN_SCORES:
        raise ModelError(f"need at least {MIN_SCORES} normal windows to calibrate a threshold (got {len(scores)})")
    if not np.all(np.isfinite(scores)):
        raise ModelError("calibration scores contain NaN or infinity")
    if false_alarms_per_day <= 0 or windows_per_day <= 0:
        raise ModelError("false-alarm budget and windows per day must be positive")
    if not 1 <= k <= n:
        raise ModelError(f"need 1 <= k <= n (got k={k}, n={n})")
    stat = rolling_kth(scores, k, n)
    p = min(false_alarms_per_day / windows_per_day, 1 - TAIL_FROM)
    typical = float(np.median(scores))
    u = float(np.quantile(stat, TAIL_FROM))
    excess = stat[stat > u] - u
    beta = float(excess.mean()) if len(excess) else 0.0
    high = u + beta * math.log((1 - TAIL_FROM) / p)
    span = max(high - typical, 1e-9 * max(abs(typical), 1.0))
    return Threshold(typical + margin * span, typical, 1 - p, margin, len(scores))
