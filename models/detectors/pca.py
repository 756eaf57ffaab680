"""PCA on robust z-scores with Hotelling's T² (unusual along normal directions) and Q/SPE
(a pattern normal data never shows, e.g. current up without flow up), plus a level test.

Signals of a machine move together (flow, pressure and current follow the load); PCA learns
those couplings, so a fault that breaks one (a leak: pressure down while flow goes up) stands
out even when every signal alone is within its usual range.

T² and Q add up all features, so one feature 6 sigmas off among 50 barely moves them. That is
how slow faults look: only a temperature's ``level`` or ``trend`` residual (``models.levels``)
moves. So the score also takes the largest of those residuals, each divided by its own
training 99th percentile of |z| (a temperature's trend has heavier tails after every stop than
its level), and every statistic is divided by its training 99th percentile.
"""

from __future__ import annotations

from typing import Any, ClassVar

import numpy as np
import numpy.typing as npt

from edge_agent.core.errors import ModelError
from models.detectors.base import Arrays, FloatArray, RobustScaler, Score, check_shape, need_arrays, per_signal
from models.levels import MODEL_FEATURES

_LEVEL = np.array([MODEL_FEATURES.index("level"), MODEL_FEATURES.index("trend")])


def level_columns(n_signals: int) -> npt.NDArray[np.int64]:
    """Indices of every signal's ``level`` and ``trend`` features in a detector vector."""
    cols: npt.NDArray[np.int64] = (np.arange(n_signals)[:, None] * len(MODEL_FEATURES) + _LEVEL).ravel()
    return cols


class PcaDetector:
    """Score = max(T²/T²₉₉, Q/Q₉₉, max over level features of |z|/|z|₉₉), limits from training."""

    name: ClassVar[str] = "pca"

    def __init__(self, signals: list[str], seed: int = 0, variance: float = 0.9) -> None:
        self.signals = list(signals)
        self.seed = seed
        self.variance = variance
        self.scaler: RobustScaler | None = None
        self.mean = np.empty(0)
        self.components = np.empty((0, 0))
        self.eigen = np.empty(0)
        self.t2_ref = 1.0
        self.q_ref = 1.0
        self.level_ref = np.ones(2 * len(self.signals))
        self._cols = level_columns(len(self.signals))

    def fit(self, windows: FloatArray) -> None:
        """Keep the components that explain ``variance`` of the robustly scaled training windows."""
        check_shape(windows, self.signals)
        self.scaler = RobustScaler.fit(windows)
        z = self.scaler.z(windows)
        self.mean = z.mean(axis=0)
        _, s, vt = np.linalg.svd(z - self.mean, full_matrices=False)
        eigen = s * s / max(len(z) - 1, 1)
        total = float(eigen.sum())
        if total <= 0:
            raise ModelError(
                "every training window is identical: no signal changed while the machine ran. "
                "Fix: check that the tags are live (not frozen, the right addresses), or model other signals"
            )
        k = int(np.searchsorted(np.cumsum(eigen) / total, self.variance) + 1)
        k = max(1, min(k, len(eigen), len(z) - 1))
        self.components = vt[:k].copy()  # a view would keep the whole SVD matrix alive
        self.eigen = np.maximum(eigen[:k], 1e-9 * total)
        t2, q = self._t2_q(z)
        self.t2_ref = float(max(np.quantile(t2, 0.99), 1e-9))
        self.q_ref = float(max(np.quantile(q, 0.99), 1e-9))
        self.level_ref = np.maximum(np.quantile(np.abs(z[:, self._cols]), 0.99, axis=0), 1e-9)

    def _t2_q(self, z: FloatArray) -> tuple[FloatArray, FloatArray]:
        c = np.atleast_2d(z) - self.mean
        t = c @ self.components.T
        t2 = np.sum(t * t / self.eigen, axis=1)
        r = c - t @ self.components
        return t2, np.sum(r * r, axis=1)

    def score(self, window: FloatArray) -> Score:
        """T² and Q against their training limits; contributions split both back onto features."""
        check_shape(window, self.signals)
        if self.scaler is None:
            raise ModelError("pca detector scored before fit")
        z = self.scaler.z(window)
        c = z - self.mean
        t = self.components @ c
        r = c - t @ self.components
        t2 = float(np.sum(t * t / self.eigen))
        q = float(np.dot(r, r))
        # T² contribution of feature j: c_j * sum_i p_ij t_i / lambda_i (negative parts dropped).
        t2_parts = np.maximum(c * (self.components.T @ (t / self.eigen)), 0.0)
        parts = t2_parts / self.t2_ref + r * r / self.q_ref
        lz = z[self._cols] / self.level_ref
        parts[self._cols] += lz * lz
        level = float(np.max(np.abs(lz)))
        return Score(max(t2 / self.t2_ref, q / self.q_ref, level), per_signal(parts, self.signals))

    def to_state(self) -> tuple[Arrays, dict[str, Any]]:
        """Arrays: scaler, mean, components, eigenvalues; params: the two reference limits."""
        if self.scaler is None:
            raise ModelError("pca detector saved before fit")
        arrays: Arrays = {
            "center": self.scaler.center,
            "scale": self.scaler.scale,
            "mean": self.mean,
            "components": self.components,
            "eigen": self.eigen,
            "level_ref": self.level_ref,
        }
        return arrays, {"t2_ref": self.t2_ref, "q_ref": self.q_ref, "variance": self.variance}

    @classmethod
    def from_state(cls, signals: list[str], arrays: Arrays, params: dict[str, Any]) -> PcaDetector:
        """Rebuild from ``to_state`` output."""
        need_arrays(arrays, ["center", "scale", "mean", "components", "eigen", "level_ref"], cls.name)
        det = cls(signals, variance=float(params.get("variance", 0.9)))
        det.scaler = RobustScaler(arrays["center"].astype(np.float64), arrays["scale"].astype(np.float64))
        check_shape(det.scaler.center, signals)
        det.mean = arrays["mean"].astype(np.float64)
        det.components = arrays["components"].astype(np.float64)
        det.eigen = arrays["eigen"].astype(np.float64)
        det.t2_ref = float(params["t2_ref"])
        det.q_ref = float(params["q_ref"])
        det.level_ref = arrays["level_ref"].astype(np.float64)
        if det.level_ref.shape != (2 * len(signals),):
            raise ModelError("pca model's level limits do not fit the signals; the file is damaged. Fix: retrain")
        return det
