"""Alert thresholds from a false-alarm budget, not from a number someone guessed.

The budget is "at most B false alerts per day". With W windows per day, a window may exceed
the threshold by chance with probability about B / W, so the threshold is the (1 - B/W)
quantile of scores on normal data the detector did not learn from, widened by a margin for
what training did not see (another season, a new batch of material). When there are fewer
normal windows than that quantile can resolve, the largest one is used, widened the same way.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from edge_agent.errors import ModelError


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
        return (score - self.typical) / span if span > 0 else (0.0 if score <= self.value else float("inf"))


def calibrate(
    scores: npt.NDArray[np.float64],
    windows_per_day: float,
    false_alarms_per_day: float,
    margin: float = 1.5,
) -> Threshold:
    """Threshold = typical + margin x (quantile - typical), quantile = 1 - budget / windows per day."""
    scores = np.asarray(scores, dtype=np.float64)
    if len(scores) < 10:
        raise ModelError(f"need at least 10 normal windows to calibrate a threshold (got {len(scores)})")
    if not np.all(np.isfinite(scores)):
        raise ModelError("calibration scores contain NaN or infinity")
    if false_alarms_per_day <= 0 or windows_per_day <= 0:
        raise ModelError("false-alarm budget and windows per day must be positive")
    q = 1.0 - min(false_alarms_per_day / windows_per_day, 0.5)
    q = min(q, 1.0 - 1.0 / (len(scores) + 1))  # beyond this the data cannot tell: use the top
    typical = float(np.median(scores))
    high = float(np.quantile(scores, q))
    span = max(high - typical, 1e-9 * max(abs(typical), 1.0))
    return Threshold(typical + margin * span, typical, q, margin, len(scores))
