"""Detectors by name. Adding one is a module in this folder plus one line in ``DETECTORS``.

``DETECTORS`` maps the config name to the class; every class takes ``(signals, seed=...)``,
has ``fit``/``score``/``to_state`` (the ``Detector`` protocol) and a ``from_state`` classmethod.
"""

from __future__ import annotations

from typing import Any, Protocol

from models.detectors.base import Arrays, Detector, RobustScaler, Score
from models.detectors.forest import IsolationForestDetector
from models.detectors.pca import PcaDetector
from models.detectors.robust import RobustBaseline


class DetectorClass(Protocol):
    """A registry entry: build an unfitted detector, or rebuild a fitted one from its state."""

    def __call__(self, signals: list[str], seed: int = 0) -> Detector: ...

    def from_state(self, signals: list[str], arrays: Arrays, params: dict[str, Any]) -> Detector: ...


DETECTORS: dict[str, DetectorClass] = {
    RobustBaseline.name: RobustBaseline,
    PcaDetector.name: PcaDetector,
    IsolationForestDetector.name: IsolationForestDetector,
}

__all__ = ["DETECTORS", "Detector", "DetectorClass", "RobustScaler", "Score"]
