"""Isolation Forest, fitted by scikit-learn and scored by plain numpy.

scikit-learn costs more memory once imported than the agent's whole footprint budget allows on a
Raspberry Pi for the sake of scoring one window every few seconds. So the fit runs in a child
process (spawned, so the agent never imports scikit-learn) unless scikit-learn is already loaded
here (the offline CLI), and the fitted trees are exported to padded arrays: child indices,
split feature, threshold and the path length credited at each leaf. Scoring walks all trees at
once, one numpy step per tree level, and gives the same numbers as ``score_samples`` (checked
in the tests).
"""

from __future__ import annotations

import sys
from typing import Any, ClassVar

import numpy as np
import numpy.typing as npt

from edge_agent.core.errors import ModelError
from models.detectors.base import Arrays, FloatArray, RobustScaler, Score, check_shape, need_arrays, per_signal

_EULER = 0.5772156649015329


def average_path(n: FloatArray) -> FloatArray:
    """c(n): the mean path length of an unsuccessful search in a binary tree of n points."""
    n = np.asarray(n, dtype=np.float64)
    out = np.where(n > 2, 2.0 * (np.log(np.maximum(n - 1.0, 1.0)) + _EULER) - 2.0 * (n - 1.0) / np.maximum(n, 1.0), 0.0)
    return np.where(n == 2, 1.0, out)


def fit_forest_arrays(z: FloatArray, seed: int, n_trees: int, max_samples: int) -> Arrays:
    """Fit scikit-learn's IsolationForest on ``z`` and export its trees as padded numpy arrays.

    Module-level so a spawned child process can run it; it returns only numbers.
    """
    from sklearn.ensemble import IsolationForest

    forest = IsolationForest(n_estimators=n_trees, max_samples=min(max_samples, len(z)), random_state=seed)
    forest.fit(z)
    trees = forest.estimators_
    width = max(t.tree_.node_count for t in trees)
    shape = (len(trees), width)
    left = np.full(shape, -1, dtype=np.int32)
    right = np.full(shape, -1, dtype=np.int32)
    feature = np.zeros(shape, dtype=np.int32)
    threshold = np.zeros(shape, dtype=np.float64)
    leaf_path = np.zeros(shape, dtype=np.float64)
    depth_max = 0
    for i, (est, feats) in enumerate(zip(trees, forest.estimators_features_, strict=True)):
        tree = est.tree_
        n = tree.node_count
        left[i, :n] = tree.children_left
        right[i, :n] = tree.children_right
        feature[i, :n] = np.where(tree.feature >= 0, np.asarray(feats)[np.maximum(tree.feature, 0)], 0)
        threshold[i, :n] = tree.threshold
        depth = np.zeros(n, dtype=np.float64)
        for node in range(n):  # children always come after their parent in sklearn's layout
            if tree.children_left[node] >= 0:
                depth[tree.children_left[node]] = depth[node] + 1
                depth[tree.children_right[node]] = depth[node] + 1
        depth_max = max(depth_max, int(depth.max()))
        leaf_path[i, :n] = depth + average_path(tree.n_node_samples.astype(np.float64))
    return {
        "left": left,
        "right": right,
        "feature": feature,
        "threshold": threshold,
        "leaf_path": leaf_path,
        "norm": np.array([average_path(np.array([float(forest.max_samples_)]))[0], float(depth_max)]),
    }


class IsolationForestDetector:
    """Score = c(psi) / mean path length over the trees (see ``score``).

    Trees say nothing per signal, so contributions are the robust z² shares of each signal
    (the same as the robust baseline's), which is what an engineer checks first anyway.
    """

    name: ClassVar[str] = "iforest"

    def __init__(self, signals: list[str], seed: int = 0, n_trees: int = 100, max_samples: int = 256) -> None:
        self.signals = list(signals)
        self.seed = seed
        self.n_trees = n_trees
        self.max_samples = max_samples
        self.scaler: RobustScaler | None = None
        self.trees: Arrays = {}
        self._flat_cache: tuple[npt.NDArray[np.int64], ...] | None = None

    def fit(self, windows: FloatArray) -> None:
        """Fit in a spawned child process unless scikit-learn is already imported in this one.

        multiprocessing is imported here, not at module level: an agent that never learns an
        Isolation Forest does not carry its memory (docs/models.md, Footprint).
        """
        from concurrent.futures import ProcessPoolExecutor
        from concurrent.futures.process import BrokenProcessPool
        from multiprocessing import get_context

        check_shape(windows, self.signals)
        self.scaler = RobustScaler.fit(windows)
        self._flat_cache = None
        z = self.scaler.z(windows)
        args = (z, self.seed, self.n_trees, self.max_samples)
        try:
            if "sklearn" in sys.modules:
                self.trees = fit_forest_arrays(*args)
            else:
                with ProcessPoolExecutor(max_workers=1, mp_context=get_context("spawn")) as pool:
                    self.trees = pool.submit(fit_forest_arrays, *args).result()
        except BrokenProcessPool as exc:
            raise ModelError(
                "the iforest training process died (out of memory, or the main module starts work on import). "
                "Fix: train offline with 'edge-agent model train' or use detector 'pca'"
            ) from exc
        except ImportError as exc:
            raise ModelError(
                "the iforest detector needs scikit-learn to train. Fix: pip install 'edge-agent[models]' "
                "or use detector 'pca' or 'robust'"
            ) from exc

    def _flat(self) -> tuple[npt.NDArray[np.int64], ...]:
        """The padded trees as 1-D arrays with global node numbers: one ``take`` per level, fast."""
        if self._flat_cache is None:
            left, right = self.trees["left"], self.trees["right"]
            n_trees, width = left.shape
            offset = (np.arange(n_trees, dtype=np.int64) * width)[:, None]
            self._flat_cache = (
                np.where(left >= 0, left + offset, -1).ravel(),
                np.where(right >= 0, right + offset, -1).ravel(),
                self.trees["feature"].astype(np.int64).ravel(),
                offset.ravel(),
            )
        return self._flat_cache

    def path_lengths(self, z: FloatArray) -> FloatArray:
        """Mean path length over the trees for each row of ``z`` (all trees walked together)."""
        x = np.atleast_2d(z).astype(np.float32).astype(np.float64)  # sklearn splits float32 inputs
        left, right, feature, roots = self._flat()
        threshold = self.trees["threshold"].ravel()
        leaf_path = self.trees["leaf_path"].ravel()
        out = np.empty(len(x))
        for r, row in enumerate(x):
            node = roots.copy()
            for _ in range(int(self.trees["norm"][1]) + 1):
                child = left[node]
                inner = child >= 0
                if not inner.any():
                    break
                go_left = row[feature[node]] <= threshold[node]
                node = np.where(inner, np.where(go_left, child, right[node]), node)
            out[r] = leaf_path[node].mean()
        return out

    def score(self, window: FloatArray) -> Score:
        """c(psi) / mean path length: about 1 or less when normal, growing as a window is easier to isolate.

        (scikit-learn's score is 2^(-path / c(psi)), squeezed into (0, 1); this scale is unbounded
        above, so the threshold's tail extrapolation works on it as on the other detectors.)
        """
        check_shape(window, self.signals)
        if self.scaler is None or not self.trees:
            raise ModelError("iforest detector scored before fit")
        z = self.scaler.z(window)
        value = float(self.trees["norm"][0] / max(self.path_lengths(z)[0], 1e-9))
        return Score(value, per_signal(z * z, self.signals))

    def to_state(self) -> tuple[Arrays, dict[str, Any]]:
        """Arrays: scaler and the padded trees."""
        if self.scaler is None or not self.trees:
            raise ModelError("iforest detector saved before fit")
        arrays: Arrays = {"center": self.scaler.center, "scale": self.scaler.scale, **self.trees}
        return arrays, {"n_trees": self.n_trees, "max_samples": self.max_samples}

    @classmethod
    def from_state(cls, signals: list[str], arrays: Arrays, params: dict[str, Any]) -> IsolationForestDetector:
        """Rebuild from ``to_state`` output."""
        keys = ["center", "scale", "left", "right", "feature", "threshold", "leaf_path", "norm"]
        need_arrays(arrays, keys, cls.name)
        det = cls(signals, n_trees=int(params.get("n_trees", 100)), max_samples=int(params.get("max_samples", 256)))
        det.scaler = RobustScaler(arrays["center"].astype(np.float64), arrays["scale"].astype(np.float64))
        check_shape(det.scaler.center, signals)
        det.trees = {k: arrays[k] for k in keys[2:]}
        n_features = len(det.scaler.center)
        if (
            det.trees["feature"].max(initial=0) >= n_features
            or det.trees["left"].max(initial=0) >= det.trees["left"].shape[1]
        ):
            raise ModelError("iforest model refers to features or nodes that do not exist; the file is damaged")
        return det
