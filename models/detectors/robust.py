"""Robust per-signal baseline: how many robust sigmas (median/MAD) each feature is from normal.

The simplest detector and the easiest to explain: the score is the largest robust z-score of
any feature, so "score 8" reads as "one signal is 8 sigmas away from what this machine does".
"""

from __future__ import annotations

from typing import Any, ClassVar

import numpy as np

from models.detectors.base import Arrays, FloatArray, RobustScaler, Score, check_shape, need_arrays, per_signal


class RobustBaseline:
    """Median/MAD per feature; score = max |z|; a signal's contribution = its features' z²."""

    name: ClassVar[str] = "robust"

    def __init__(self, signals: list[str], seed: int = 0) -> None:
        self.signals = list(signals)
        self.seed = seed
        self.scaler: RobustScaler | None = None

    def fit(self, windows: FloatArray) -> None:
        """Learn the median and MAD of every feature."""
        check_shape(windows, self.signals)
        self.scaler = RobustScaler.fit(windows)

    def score(self, window: FloatArray) -> Score:
        """Largest absolute robust z-score of the window."""
        check_shape(window, self.signals)
        z = self._scaler().z(window)
        return Score(float(np.max(np.abs(z))), per_signal(z * z, self.signals))

    def _scaler(self) -> RobustScaler:
        if self.scaler is None:
            from edge_agent.core.errors import ModelError

            raise ModelError("robust detector scored before fit")
        return self.scaler

    def to_state(self) -> tuple[Arrays, dict[str, Any]]:
        """Arrays: center, scale."""
        s = self._scaler()
        return {"center": s.center, "scale": s.scale}, {}

    @classmethod
    def from_state(cls, signals: list[str], arrays: Arrays, params: dict[str, Any]) -> RobustBaseline:
        """Rebuild from ``to_state`` output."""
        need_arrays(arrays, ["center", "scale"], cls.name)
        det = cls(signals)
        det.scaler = RobustScaler(arrays["center"].astype(np.float64), arrays["scale"].astype(np.float64))
        check_shape(det.scaler.center, signals)
        return det
