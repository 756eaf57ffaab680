"""Alert events and anomaly scores shaped like the agent's (``AlertSink._event``, docs/models.md).

The explanation (summary, ranked signals, hint) comes from the real ``models.explain.explain`` on
an assessment in which vibration and motor temperature are up, so the texts are the agent's own.
"""

from __future__ import annotations

from typing import Any

from models.explain import explain, iso
from models.model import Assessment

SINCE_S = 1_767_622_411.0  # 2026-01-05T14:13:31Z
MODEL_VERSION = "1ea05d5da314"
_QUIET = {"mean": 0.1, "rms": 0.1, "std": 0.2, "p2p": 0.1, "kurtosis": 0.0, "crest": 0.1, "slope": 0.0}


def assessment(at_s: float, score: float = 8.965544, threshold: float = 4.039268) -> Assessment:
    return Assessment(
        end_s=at_s,
        start_s=at_s - 60.0,
        state="running",
        score=score,
        threshold=threshold,
        level=score / threshold,
        contributions={"vibration_rms": 0.631, "motor_temperature": 0.304, "flow": 0.065},
        sigmas={"vibration_rms": 18.5, "motor_temperature": 6.4, "flow": 0.8},
        feature_z={
            "vibration_rms": {**_QUIET, "mean": 18.5, "rms": 18.5},
            "motor_temperature": {**_QUIET, "mean": 6.4, "rms": 6.4},
            "flow": dict(_QUIET),
        },
    )


def alert_event(
    kind: str,
    at_s: float,
    *,
    machine: str = "pump-1",
    severity: str = "alarm",
    sequence: int = 1,
    acknowledged: bool = False,
    scored: bool = True,
) -> dict[str, Any]:
    """What ``AlertSink._event`` emits for a transition of ``kind`` at ``at_s``."""
    found = assessment(at_s) if scored else None
    detail = explain(assessment(at_s), SINCE_S, MODEL_VERSION)
    level = 8.965544 / 4.039268
    return {
        "schema": 1,
        "event": kind,
        "alert_id": f"{machine}-{sequence}-{int(SINCE_S)}",
        "site": "plant",
        "area": "hall 1",
        "line": "line-2",
        "machine": machine,
        "active": kind != "cleared",
        "severity": severity,
        "acknowledged": acknowledged,
        "acknowledged_by": "ana" if acknowledged else None,
        "since": iso(SINCE_S),
        "at": iso(at_s),
        "level": round(level if found else 0.4, 3),
        "peak_level": round(level, 3),
        "score": None if found is None else round(found.score, 6),
        "threshold": None if found is None else round(found.threshold, 6),
        "operating_state": None if found is None else found.state,
        "detector": "pca",
        "model_version": MODEL_VERSION,
        "summary": detail["summary"],
        "signals": detail["signals"],
        "hint": detail["hint"],
    }


def score_message(at_s: float, score: float, *, machine: str = "pump-1", threshold: float = 4.0) -> dict[str, Any]:
    """An anomaly score as published on ``…/{machine}/scores`` (schema 1)."""
    return {
        "schema": 1,
        "site": "plant",
        "area": "hall 1",
        "line": "line-2",
        "machine": machine,
        "at": iso(at_s),
        "score": score,
        "threshold": threshold,
        "level": score / threshold,
        "operating_state": "running",
        "detector": "pca",
        "model_version": MODEL_VERSION,
    }
