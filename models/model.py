"""A machine's model: one detector and one threshold per learned operating state, in one file.

``MachineModel.train`` turns a recording's windows into detectors; ``assess`` scores one window
and returns everything an alert and its explanation need; ``save``/``load`` use the safe model
file format of ``models.store``.

Training holds out every third of nine chronological chunks (30 %, spread over the day so the
daily temperature swing is in both parts): the detector learns from the rest, and the threshold
is calibrated on scores of windows it did not learn from, which is what production looks like.
``held_out`` is that split and ``MIN_WINDOWS`` the fewest windows of a state it leaves both parts
big enough for: the agent's learning, its config check, the status page and ``model train`` all
use these two, never a number of their own.
"""

from __future__ import annotations

import math
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

from edge_agent.core.errors import ModelError
from models import store
from models.detectors import DETECTORS, Detector, RobustScaler
from models.features import FEATURES, FloatArray, Window, WindowSet, WindowSpec
from models.levels import MODEL_FEATURES, LevelModel
from models.thresholds import MIN_SCORES, Threshold, calibrate

MIN_FIT_WINDOWS = 20
"""Windows of a state the detector learns from at least (the part training does not hold out)."""


def held_out(n: int) -> npt.NDArray[np.bool_]:
    """Which of ``n`` windows (oldest first) training holds out to calibrate the threshold.

    Every third of nine chronological chunks: about a third, spread over the whole recording.
    """
    held: npt.NDArray[np.bool_] = (np.arange(n) * 9 // max(n, 1)) % 3 == 2
    return held


def min_windows_to_learn(min_fit: int = MIN_FIT_WINDOWS, min_calibration: int = MIN_SCORES) -> int:
    """The fewest windows of one state that training learns from: from this count on, every count
    leaves at least ``min_fit`` windows to fit and ``min_calibration`` to calibrate with ``held_out``.

    Not simply the first count that works: the split's rounding is not monotonic (32 windows hold
    out 10, 33 hold out 9), and a machine can stop at any count above the minimum.
    """
    # From 9 * c windows on every chunk has at least c windows: three chunks are held, six fit.
    sure = 9 * max(math.ceil(min_calibration / 3), math.ceil(min_fit / 6), 1)
    n = sure
    while n > 1:
        held = int(held_out(n - 1).sum())
        if held < min_calibration or n - 1 - held < min_fit:
            break
        n -= 1
    return n


MIN_WINDOWS = min_windows_to_learn()
"""Fewer normal windows than this in a state and the state is not learned (nor scored): 34."""


def windows_in(duration_s: float, hop_s: float) -> int:
    """Windows that ``duration_s`` of data in a state gives at one window every ``hop_s``.

    The agent learns once this many windows of ``learn_after`` are in (``learn_after / hop``,
    rounded up); the window length only adds to the time the first one takes.
    """
    return max(1, math.ceil(duration_s / hop_s - 1e-9))


def learning_progress(counts: Mapping[str, int], learn_states: Sequence[str], planned: int) -> tuple[int, int]:
    """A learning machine's (windows so far, windows needed), true to what the trainer does.

    ``counts`` are the collected windows per state and ``planned`` the windows ``learn_after``
    asks for (``windows_in``). Learning needs ``planned`` windows in the learned states and at
    least ``MIN_WINDOWS`` of them in one state, since a state with fewer is not learned; so the
    windows needed grow while a machine's windows are spread over several states. Learning
    starts when the first number reaches the second.
    """
    total = sum(counts.get(state, 0) for state in learn_states)
    best = max((counts.get(state, 0) for state in learn_states), default=0)
    return total, max(planned, MIN_WINDOWS, total + MIN_WINDOWS - best)


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
            held = held_out(len(x))
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
                f"not enough normal data to learn: need {MIN_WINDOWS} windows in one of the state(s) "
                f"{list(learn_states)}, got {counts} ({windows.skipped} windows skipped for gaps). "
                "Fix: record longer or shorten the hop"
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
