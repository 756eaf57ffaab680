"""Offline, causal evaluation of a model against labelled data (the simulators' ground truth).

``replay`` runs a recording through exactly the pipeline the agent runs live (windows, state,
score, alert state machine), so the decision at time t only uses rows up to t. Each row's
prediction is "an alert is open" at that row. ``Counts`` adds up over several recordings
(micro-average) and ``Counts.report`` gives:

- point-wise precision, recall, F1, false-alarm rate (FP / normal rows) and missed-alarm rate
  (FN / fault rows);
- event-wise recall: a fault episode (a run of label 1) is detected when an alert is open at
  any row inside it; detection delay = first such row minus the episode's start;
- false alerts per day: alerts raised outside every fault episode, per day of data.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from typing import Any

import numpy as np
import numpy.typing as npt

from models.alerts import AlertPolicy, AlertState
from models.features import Windower
from models.model import MachineModel

BoolArray = npt.NDArray[np.bool_]


@dataclass(frozen=True, slots=True)
class Replay:
    """Per-row predictions, each row's score level (NaN where none yet) and the raise times."""

    predicted: BoolArray
    level: npt.NDArray[np.float64]
    raised_s: list[float]


def replay(
    model: MachineModel,
    time_s: npt.NDArray[np.float64],
    values: npt.NDArray[np.float64],
    states: list[str],
    policy: AlertPolicy | None = None,
) -> Replay:
    """Stream a recording through the model and an alert state machine, row by row."""
    windower = Windower(model.spec, values.shape[1])
    policy = policy or AlertPolicy()
    if policy.span_s is None:
        policy = replace(policy, span_s=(policy.n - 1) * model.spec.hop_s + model.spec.length_s)
    alert = AlertState("eval", policy)
    predicted = np.zeros(len(time_s), dtype=np.bool_)
    level = np.full(len(time_s), np.nan)
    raised: list[float] = []
    current = np.nan
    for i in range(len(time_s)):
        for window in windower.push(float(time_s[i]), values[i], states[i]):
            a = model.assess(window)
            if a is None:
                continue
            current = a.level
            for t in alert.observe(a.start_s, a.end_s, a.level):
                if t.kind == "raised":
                    raised.append(t.at_s)
        predicted[i] = alert.active
        level[i] = current
    return Replay(predicted, level, raised)


def episodes(labels: BoolArray) -> list[tuple[int, int]]:
    """Runs of True as (first index, last index + 1)."""
    padded = np.concatenate([[False], labels, [False]]).astype(np.int8)
    edges = np.flatnonzero(np.diff(padded))
    return [(int(a), int(b)) for a, b in zip(edges[::2], edges[1::2], strict=True)]


@dataclass(slots=True)
class Counts:
    """Sums over one or more recordings; ``add`` one, ``report`` at the end."""

    tp: int = 0
    fp: int = 0
    fn: int = 0
    tn: int = 0
    episodes: int = 0
    detected: int = 0
    delays_s: list[float] = field(default_factory=list)
    false_alerts: int = 0
    alerts: int = 0
    duration_s: float = 0.0

    def add(self, time_s: npt.NDArray[np.float64], labels: BoolArray, run: Replay) -> None:
        """Count one recording."""
        p, y = run.predicted, labels
        self.tp += int(np.sum(p & y))
        self.fp += int(np.sum(p & ~y))
        self.fn += int(np.sum(~p & y))
        self.tn += int(np.sum(~p & ~y))
        spans = episodes(y)
        for a, b in spans:
            self.episodes += 1
            hit = np.flatnonzero(p[a:b])
            if len(hit):
                self.detected += 1
                self.delays_s.append(float(time_s[a + hit[0]] - time_s[a]))
        for t in run.raised_s:
            self.alerts += 1
            inside = any(time_s[a] <= t <= time_s[b - 1] for a, b in spans)
            self.false_alerts += 0 if inside else 1
        if len(time_s) > 1:
            self.duration_s += float(time_s[-1] - time_s[0])

    def report(self) -> dict[str, Any]:
        """The metrics as JSON-able numbers (None where undefined, e.g. recall without faults)."""

        def ratio(a: float, b: float) -> float | None:
            return round(a / b, 4) if b else None

        precision = ratio(self.tp, self.tp + self.fp)
        recall = ratio(self.tp, self.tp + self.fn)
        f1 = (
            round(2 * precision * recall / (precision + recall), 4)
            if precision is not None and recall is not None and precision + recall > 0
            else None
        )
        days = self.duration_s / 86400.0
        return {
            "rows": self.tp + self.fp + self.fn + self.tn,
            "fault_rows": self.tp + self.fn,
            "precision": precision,
            "recall": recall,
            "f1": f1,
            "false_alarm_rate": ratio(self.fp, self.fp + self.tn),
            "missed_alarm_rate": ratio(self.fn, self.tp + self.fn),
            "episodes": self.episodes,
            "episodes_detected": self.detected,
            "event_recall": ratio(self.detected, self.episodes),
            "mean_detection_delay_s": round(float(np.mean(self.delays_s)), 1) if self.delays_s else None,
            "median_detection_delay_s": round(float(np.median(self.delays_s)), 1) if self.delays_s else None,
            "alerts": self.alerts,
            "false_alerts": self.false_alerts,
            "days": round(days, 3),
            "false_alerts_per_day": round(self.false_alerts / days, 3) if days > 0 else None,
        }
