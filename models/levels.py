"""Level residuals: how far each signal's window mean is from what the *other* signals explain.

A window's own statistics cannot see a slow fault: a cooler losing capacity or a temperature
sensor creeping upward moves the temperature by a few kelvin over half an hour, well inside
the range normal load changes cover. What gives it away is that the temperature no longer fits
the load: it is higher than the current of the last 10-30 minutes says it should be. So per
learned state a ridge regression predicts each signal's window mean from the other signals'
window means and slow means (``models.features.CONTEXT``); the residual is the signal's
``level`` feature. A second regression on the same inputs predicts the signal's trend (its
10-min minus its 30-min slow mean); that residual, ``trend``, shows a reading creeping away
from what the load explains within minutes, long before the offset itself stands out from the
daily swing of the hall temperature.

Only slow signals (temperatures, see ``SLOW_RATIO``) get these two features; fast ones get 0.
Their couplings (flow, pressure and current follow load at once) are what PCA on the window
means already models, and a residual on them would blame the wrong signal: with bearing
friction the current rises, and a pressure "predicted" from the current would look too low.
The trend of a fast signal would also lag a step (vibration falling back when imbalance is
fixed) for half an hour and keep the alert open. A signal's own slow means are never regressors: they would
absorb the fault they are meant to reveal and keep an alert open long after the fault ends.

The detectors see ``MODEL_FEATURES`` per signal (the window statistics plus ``level``), never
the slow means. Scoring costs one small matrix-vector product.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from edge_agent.core.errors import ModelError
from models.features import CONTEXT, FEATURES, STATS, FloatArray

MODEL_FEATURES: tuple[str, ...] = (*STATS, "level", "trend")
"""Per-signal features the detectors see, in column order within each signal's block."""

MIN_SPAN_S = 12 * 3600.0
"""Training shorter than this (from first to last window) learns no levels: a thermal model
learned in three hours has not seen the hall warm up and cool down, and calls the afternoon a
fault. (``learn_after`` is 24 h by default.)"""
MIN_WINDOWS = 30
"""Fewer training windows with warm slow means than this and no levels are learned."""
RIDGE = 0.01
"""Ridge penalty relative to the number of training windows (regressors are standardised)."""
SLOW_RATIO = 1.5
"""A signal whose window means move less than this many times its 10-vs-30-min trend is a slow,
integrating state (a temperature, a tank level): an effect of the others, never a regressor.
(Measured on the simulators: temperatures 0.6-1.1, currents, flows, speeds, vibration 1.8-4.2.)
Were a temperature to explain the current, a drifting temperature sensor would show up as an
odd current too, and the hint would lose its "only one signal changed" evidence."""

_REGRESSORS = (FEATURES.index("mean"), *(FEATURES.index(c) for c in CONTEXT))
_FAST, _SLOW = FEATURES.index(CONTEXT[0]), FEATURES.index(CONTEXT[-1])


def _targets(blocks: FloatArray) -> FloatArray:
    """Per window and signal: the window mean and the trend (10-min minus 30-min slow mean)."""
    return np.stack([blocks[:, :, 0], blocks[:, :, _FAST] - blocks[:, :, _SLOW]], axis=2)


def model_feature_names(signals: list[str] | tuple[str, ...]) -> list[str]:
    """Column names of a detector's input vector: ``signal:feature``, signal-major."""
    return [f"{s}:{f}" for s in signals for f in MODEL_FEATURES]


def _blocks(windows: FloatArray, n_signals: int) -> FloatArray:
    x = np.atleast_2d(np.asarray(windows, dtype=np.float64))
    if x.shape[1] != n_signals * len(FEATURES):
        raise ModelError(
            f"window has {x.shape[1]} features but the model expects {n_signals * len(FEATURES)} "
            f"({n_signals} signals x {len(FEATURES)}); retrain after changing signals"
        )
    return x.reshape(len(x), n_signals, len(FEATURES))


@dataclass(slots=True)
class LevelModel:
    """Per signal: ``mean ~ intercept + coef @ standardised(other signals' means and slow means)``."""

    center: FloatArray
    scale: FloatArray
    coef: FloatArray
    intercept: FloatArray
    slow: FloatArray
    """1.0 for slow signals (they have ``level`` and ``trend``), 0.0 for the others."""
    low: FloatArray
    high: FloatArray
    """Regressors are clipped to their training range: a fault far outside it in one signal
    (vibration five times normal) must not be extrapolated into the others' predictions."""

    @property
    def n_signals(self) -> int:
        """Signals the model was fitted on."""
        return len(self.slow)

    @classmethod
    def fit(cls, windows: FloatArray, n_signals: int, span_s: float, ridge: float = RIDGE) -> LevelModel:
        """Fit the regressions on training windows (rows, ``FEATURES`` per signal) covering ``span_s``."""
        blocks = _blocks(windows, n_signals)
        blocks = blocks[np.isfinite(blocks).all(axis=(1, 2))]  # slow means still warming up: NaN
        if len(blocks) < MIN_WINDOWS:
            span_s = 0.0  # too little warm data: no levels, but a model that works
            blocks = np.zeros((2, n_signals, len(FEATURES)))
        x = blocks[:, :, _REGRESSORS].reshape(len(blocks), -1)
        y = _targets(blocks).reshape(len(blocks), -1)
        center = x.mean(axis=0)
        scale = x.std(axis=0)
        scale = np.where(scale > 1e-9 * np.maximum(np.abs(center), 1.0), scale, 1.0)
        xs = (x - center) / scale
        owner = np.repeat(np.arange(n_signals), len(_REGRESSORS))
        fast = blocks[:, :, 0] - blocks[:, :, _FAST]
        trend = blocks[:, :, _FAST] - blocks[:, :, _SLOW]
        cause = fast.std(axis=0) >= SLOW_RATIO * np.maximum(trend.std(axis=0), 1e-12)
        slow = ~cause & (span_s >= MIN_SPAN_S)
        # Only slow signals get residuals, so only their rows are fitted and kept (a machine with
        # 50 tags and two temperatures keeps 4 rows, not 100).
        targets = np.flatnonzero(np.repeat(slow, 2))
        intercept = y[:, targets].mean(axis=0)
        gram = xs.T @ xs
        cross = xs.T @ (y[:, targets] - intercept)
        coef = np.zeros((len(targets), x.shape[1]))
        penalty = ridge * len(blocks)
        for i, j in enumerate(np.flatnonzero(slow)):
            keep = (owner != j) & cause[owner]
            if keep.any():
                a = gram[np.ix_(keep, keep)] + penalty * np.eye(int(keep.sum()))
                coef[2 * i : 2 * i + 2, keep] = np.linalg.solve(a, cross[keep, 2 * i : 2 * i + 2]).T
        return cls(center, scale, coef, intercept, slow.astype(np.float64), x.min(axis=0), x.max(axis=0))

    def transform(self, windows: FloatArray) -> FloatArray:
        """Window vectors (one or many) to detector vectors: statistics plus level and trend residuals.

        While the slow means warm up (NaN) both residuals are 0: unknown is scored as normal.
        """
        blocks = _blocks(windows, self.n_signals)
        out: FloatArray = np.zeros((len(blocks), self.n_signals, len(MODEL_FEATURES)))
        out[:, :, : len(STATS)] = blocks[:, :, : len(STATS)]
        slow = np.flatnonzero(self.slow)
        if len(slow):
            x = blocks[:, :, _REGRESSORS].reshape(len(blocks), -1)
            warm = np.asarray(np.isfinite(x).all(axis=1), dtype=np.bool_)
            x = np.clip(np.where(warm[:, None], x, self.center), self.low, self.high)
            pred = ((x - self.center) / self.scale) @ self.coef.T + self.intercept
            resid = _targets(blocks[:, slow]) - pred.reshape(len(blocks), len(slow), 2)
            out[:, slow, len(STATS) :] = np.where(warm[:, None, None], resid, 0.0)
        flat: FloatArray = out.reshape(len(blocks), -1)
        return flat[0] if np.ndim(windows) == 1 else flat

    def to_arrays(self) -> dict[str, FloatArray]:
        """The fitted numbers, for the model file."""
        return {
            "center": self.center,
            "scale": self.scale,
            "coef": self.coef,
            "intercept": self.intercept,
            "slow": self.slow,
            "low": self.low,
            "high": self.high,
        }

    @classmethod
    def from_arrays(cls, arrays: dict[str, FloatArray], n_signals: int) -> LevelModel:
        """Rebuild from ``to_arrays``; a shape that does not fit the signals means a damaged file."""
        try:
            model = cls(
                *(
                    np.asarray(arrays[k], dtype=np.float64)
                    for k in ("center", "scale", "coef", "intercept", "slow", "low", "high")
                )
            )
        except KeyError as exc:
            raise ModelError(f"level model is missing array {exc}; the file is damaged. Fix: retrain") from exc
        width = n_signals * len(_REGRESSORS)
        n_slow = 2 * int(np.count_nonzero(model.slow)) if model.slow.shape == (n_signals,) else -1
        shapes = (model.coef.shape, model.intercept.shape, model.slow.shape)
        ranges = {model.center.shape, model.scale.shape, model.low.shape, model.high.shape}
        if shapes != ((n_slow, width), (n_slow,), (n_signals,)) or ranges != {(width,)}:
            raise ModelError("level model arrays do not fit the signals; the file is damaged. Fix: retrain")
        return model
