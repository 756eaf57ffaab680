"""A machine's model: one detector and one threshold per learned operating state, in one file.

``MachineModel.train`` turns a recording's windows into detectors; ``assess`` scores one window
and returns everything an alert and its explanation need; ``save``/``load`` use the safe model
file format of ``models.store``.

Training holds out every third of nine chronological chunks (30 %, spread over the day so the
daily temperature swing is in both parts): the detector learns from the rest, and the threshold
is calibrated on scores of windows it did not learn from, which is what production looks like.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np

from edge_agent.core.errors import ModelError
from models import store
from models.detectors import DETECTORS, Detector, RobustScaler
from models.features import FEATURES, FloatArray, Window, WindowSet, WindowSpec
from models.levels import MODEL_FEATURES, LevelModel
from models.thresholds import Threshold, calibrate

MIN_WINDOWS = 30
"""Fewer normal windows than this in a state and the state is not learned (nor scored)."""


@dataclass(frozen=True, slots=True)
class Assessment:
    """One scored window: score against threshold, and per signal its share and distance from normal."""

    end_s: float
    start_s: float
    state: str
    score: float
    threshold: float
    level: float
    contributions: dict[str, float]
    sigmas: dict[str, float]
    feature_z: dict[str, dict[str, float]]

    @property
    def above(self) -> bool:
        """The window alone exceeds the threshold."""
        return self.level >= 1.0


@dataclass(slots=True)
class StateModel:
    """The level model, detector, threshold and robust scaler (for sigmas) of one operating state."""

    detector: Detector
    threshold: Threshold
    scaler: RobustScaler
    n_windows: int
    levels: LevelModel


@dataclass(slots=True)
class MachineModel:
    """Everything needed to score one machine's windows; ``version`` is the file checksum prefix."""

    signals: list[str]
    spec: WindowSpec
    detector: str
    states: dict[str, StateModel]
    trained_at: str
    false_alarms_per_day: float
    version: str = ""
    training_seconds: float = 0.0

    @classmethod
    def train(
        cls,
        windows: WindowSet,
        signals: list[str],
        spec: WindowSpec,
        *,
        detector: str = "pca",
        false_alarms_per_day: float = 0.5,
        seed: int = 0,
        learn_states: tuple[str, ...] = ("running",),
        debounce: tuple[int, int] = (3, 5),
        margin: float = 1.25,
    ) -> MachineModel:
        """Learn each state in ``learn_states`` that has at least ``MIN_WINDOWS`` windows.

        ``debounce`` is the alert rule's (k, n): the threshold is calibrated for it.
        """
        if detector not in DETECTORS:
            raise ModelError(f"unknown detector {detector!r}. Fix: use one of {sorted(DETECTORS)}")
        began = time.perf_counter()
        windows_per_day = 86400.0 / spec.hop_s
        states: dict[str, StateModel] = {}
        labels = np.array(windows.state)
        for state in learn_states:
            x = windows.features[labels == state] if len(labels) else windows.features[:0]
            if len(x) < MIN_WINDOWS:
                continue
            chunk = np.arange(len(x)) * 9 // len(x)
            held = chunk % 3 == 2
            in_state = labels == state
            span = float(windows.end_s[in_state].max() - windows.start_s[in_state].min())
            levels = LevelModel.fit(x[~held], len(signals), span)
            xm = levels.transform(x)
            det = DETECTORS[detector](signals, seed=seed)
            det.fit(xm[~held])
            scores = np.array([det.score(row).value for row in xm[held]])
            states[state] = StateModel(
                det,
                calibrate(scores, windows_per_day, false_alarms_per_day, k=debounce[0], n=debounce[1], margin=margin),
                RobustScaler.fit(xm),
                len(x),
                levels,
            )
        if not states:
            counts = {s: int(np.sum(labels == s)) for s in sorted(set(windows.state))}
            raise ModelError(
                f"not enough normal data to learn: need {MIN_WINDOWS} windows in state(s) {list(learn_states)}, "
                f"got {counts} ({windows.skipped} windows skipped for gaps). Fix: record longer or shorten the window"
            )
        now = datetime.now(UTC).isoformat(timespec="seconds")
        model = cls(list(signals), spec, detector, states, now, false_alarms_per_day)
        model.training_seconds = time.perf_counter() - began
        return model

    def assess(self, window: Window) -> Assessment | None:
        """Score a window, or None when its state was not learned (off, idle, mixed, unknown)."""
        sm = self.states.get(window.state)
        if sm is None:
            return None
        return assess_features(sm, self.signals, window.features, window)

    def save(self, path: str | Path) -> str:
        """Write the model file; sets and returns ``version``."""
        arrays: dict[str, Any] = {}
        states: dict[str, Any] = {}
        for state, sm in self.states.items():
            det_arrays, params = sm.detector.to_state()
            for k, v in det_arrays.items():
                arrays[f"{state}/detector/{k}"] = v
            arrays[f"{state}/scaler/center"] = sm.scaler.center
            arrays[f"{state}/scaler/scale"] = sm.scaler.scale
            for k, v in sm.levels.to_arrays().items():
                arrays[f"{state}/levels/{k}"] = v
            t = sm.threshold
            states[state] = {
                "params": params,
                "threshold": [t.value, t.typical, t.quantile, t.margin, t.n_scores],
                "n_windows": sm.n_windows,
            }
        header = {
            "detector": self.detector,
            "signals": self.signals,
            "features": list(FEATURES),
            "window": [self.spec.length_s, self.spec.hop_s, self.spec.min_fill, self.spec.min_samples],
            "trained_at": self.trained_at,
            "false_alarms_per_day": self.false_alarms_per_day,
            "states": states,
        }
        self.version = store.save(path, header, arrays)[:12]
        return self.version

    @classmethod
    def load(cls, path: str | Path) -> MachineModel:
        """Read a model file (verified by ``models.store.load``); ModelError if it does not make sense."""
        header, arrays = store.load(path)
        try:
            detector = str(header["detector"])
            if detector not in DETECTORS:
                raise ModelError(f"{path}: unknown detector {detector!r}. Fix: use an agent that has it, or retrain")
            if list(header["features"]) != list(FEATURES):
                raise ModelError(f"{path}: trained with other features {header['features']}. Fix: retrain")
            signals = [str(s) for s in header["signals"]]
            length, hop, fill, min_samples = header["window"]
            spec = WindowSpec(float(length), float(hop), float(fill), int(min_samples))
            states: dict[str, StateModel] = {}
            for state, info in header["states"].items():
                prefix = f"{state}/detector/"
                det_arrays = {k[len(prefix) :]: v for k, v in arrays.items() if k.startswith(prefix)}
                det = DETECTORS[detector].from_state(signals, det_arrays, info["params"])
                value, typical, q, margin, n = info["threshold"]
                scaler = RobustScaler(arrays[f"{state}/scaler/center"], arrays[f"{state}/scaler/scale"])
                lv = f"{state}/levels/"
                levels = LevelModel.from_arrays(
                    {k[len(lv) :]: v for k, v in arrays.items() if k.startswith(lv)}, len(signals)
                )
                states[state] = StateModel(
                    det,
                    Threshold(float(value), float(typical), float(q), float(margin), int(n)),
                    scaler,
                    int(info["n_windows"]),
                    levels,
                )
            model = cls(
                signals, spec, detector, states, str(header["trained_at"]), float(header["false_alarms_per_day"])
            )
        except (KeyError, TypeError, ValueError) as exc:
            raise ModelError(f"{path}: model header is incomplete ({exc!r}). Fix: retrain") from exc
        model.version = str(header["checksum"])[:12]
        return model


def assess_features(sm: StateModel, signals: list[str], features: FloatArray, window: Window) -> Assessment:
    """Score one window vector with one state's model and work out per-signal sigmas."""
    features = sm.levels.transform(features)
    score = sm.detector.score(features)
    z = sm.scaler.z(features).reshape(len(signals), len(MODEL_FEATURES))
    total = sum(score.contributions.values())
    contributions = {s: (v / total if total > 0 else 0.0) for s, v in score.contributions.items()}
    sigmas = {s: float(np.max(np.abs(z[i]))) for i, s in enumerate(signals)}
    feature_z = {s: {f: float(z[i, j]) for j, f in enumerate(MODEL_FEATURES)} for i, s in enumerate(signals)}
    return Assessment(
        window.end_s,
        window.start_s,
        window.state,
        score.value,
        sm.threshold.value,
        sm.threshold.level(score.value),
        contributions,
        sigmas,
        feature_z,
    )
