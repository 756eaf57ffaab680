"""The detector contract, the score it returns, and the robust scaling every detector shares.

A detector is two methods, as in river: ``fit(windows)`` learns normal from a matrix of feature
windows (rows) and ``score(window)`` says how unusual one window is (higher = more anomalous),
with the share each signal had in it. Its learned state is plain arrays plus JSON-able
parameters (``to_state`` / ``from_state``) so a model file never needs pickle.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, ClassVar, Protocol

import numpy as np
import numpy.typing as npt

from edge_agent.core.errors import ModelError
from models.levels import MODEL_FEATURES

FloatArray = npt.NDArray[np.float64]
Arrays = dict[str, npt.NDArray[Any]]

Z_CLIP = 50.0
"""Robust z-scores are clipped here: a dead sensor reading 0 must not swamp every other signal."""


@dataclass(frozen=True, slots=True)
class Score:
    """How unusual a window is (``value``, higher = worse) and each signal's share in it (>= 0)."""

    value: float
    contributions: dict[str, float]


class Detector(Protocol):
    """What every registered detector does. ``signals`` names the blocks of the feature vector."""

    name: ClassVar[str]
    signals: list[str]

    def fit(self, windows: FloatArray) -> None:
        """Learn normal from ``windows`` (rows = windows, columns = ``model_feature_names(signals)``)."""
        ...

    def score(self, window: FloatArray) -> Score:
        """Score one feature vector. Only numpy: scoring runs on the edge box for every window."""
        ...

    def to_state(self) -> tuple[Arrays, dict[str, Any]]:
        """Learned state as named numpy arrays (numbers only) and JSON-able parameters."""
        ...


def per_signal(values: FloatArray, signals: list[str]) -> dict[str, float]:
    """Sum per-feature amounts into one amount per signal (features are signal-major)."""
    blocks = values.reshape(len(signals), len(MODEL_FEATURES))
    return {s: float(v) for s, v in zip(signals, blocks.sum(axis=1), strict=True)}


@dataclass(slots=True)
class RobustScaler:
    """Median and MAD per feature: robust z-scores that a few odd training windows cannot bend."""

    center: FloatArray
    scale: FloatArray

    @classmethod
    def fit(cls, x: FloatArray) -> RobustScaler:
        """Median/MAD; a feature that never moved in training falls back to std, then to a tiny floor."""
        if x.ndim != 2 or len(x) < 2:
            raise ModelError(f"need at least 2 training windows to learn normal (got {len(x)})")
        if not np.all(np.isfinite(x)):
            raise ModelError("training windows contain NaN or infinity; clean the input first")
        center = np.median(x, axis=0)
        scale = 1.4826 * np.median(np.abs(x - center), axis=0)
        std = x.std(axis=0)
        floor = 1e-3 * np.maximum(np.abs(center), 1e-3)
        scale = np.where(scale > floor, scale, np.maximum(std, floor))
        return cls(center, scale)

    def z(self, x: FloatArray) -> FloatArray:
        """Robust z-scores, clipped to +-Z_CLIP."""
        return np.clip((x - self.center) / self.scale, -Z_CLIP, Z_CLIP)


def check_shape(window: FloatArray, signals: list[str]) -> None:
    """A window from another signal list is a configuration mismatch, not an anomaly."""
    width = len(signals) * len(MODEL_FEATURES)
    if window.shape[-1] != width:
        raise ModelError(
            f"window has {window.shape[-1]} features but the model expects {width} "
            f"({len(signals)} signals x {len(MODEL_FEATURES)}); retrain after changing signals"
        )


def need_arrays(arrays: Arrays, keys: list[str], detector: str) -> None:
    """A model file missing an array is damaged: say which."""
    missing = [k for k in keys if k not in arrays]
    if missing:
        raise ModelError(f"{detector} model is missing arrays {missing}; the file is damaged. Fix: retrain")
