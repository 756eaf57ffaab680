"""Turn a scored window into what a maintenance engineer reads: which signals, how far, why.

For every signal: its share of the score in percent (ranked), how far it is from normal in
robust sigmas, and the pattern (``up``, ``down``, ``noisy``, ``frozen``, ``drifting`` or
``normal``) read off its feature z-scores, including ``level`` and ``trend``: a temperature
above (or climbing faster than) what the load explains is ``up`` (``drifting``) even while its
value is inside its everyday range. Then the first rule of ``RULES`` whose pattern
matches gives a likely cause and a first action. Rules are rules of thumb that link signal
patterns to common causes on rotating and hydraulic machines; every hint says how sure it is
and that it is to be confirmed on the machine.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from models.model import Assessment

SIGNIFICANT_SIGMAS = 3.0
"""A signal counts as changed when a feature is this many robust sigmas from normal..."""
SIGNIFICANT_SHARE = 0.1
"""...and it carries at least this share of the score (or is 2x the threshold in sigmas)."""


def pattern(z: dict[str, float]) -> str:
    """Read one signal's pattern from its feature z-scores (the first check that holds wins)."""
    t = SIGNIFICANT_SIGMAS
    level, trend = z.get("level", 0.0), z.get("trend", 0.0)
    up = "up" if z["mean"] > 0 else "down"
    scatter = z["std"] >= t or z["p2p"] >= t or z["kurtosis"] >= t or z["crest"] >= t
    # A ramp inside a window widens std and peak-to-peak too; it is a creep, not noise, when the
    # slope stands out and the values are spread flat (a ramp's kurtosis is 1.8, noise's 3, spikes' more).
    ramp = abs(z["slope"]) >= t and z["kurtosis"] <= -0.5
    checks = (
        (z["std"] <= -t and z["p2p"] <= -t, "frozen"),
        (abs(z["mean"]) >= t or abs(z["rms"]) >= t, up),
        (abs(level) >= t, "up" if level > 0 else "down"),
        (abs(trend) >= t or ramp, "drifting"),  # a creep over 10-30 min, or within the window
        (scatter, "noisy"),
        (abs(z["slope"]) >= t, "drifting"),
    )
    return next((name for hit, name in checks if hit), "normal")


@dataclass(frozen=True, slots=True)
class Rule:
    """A pattern over signal kinds (``kind``: regex on the signal name) and the cause it suggests.

    ``needs`` lists (kind, patterns) that must all be present; ``only`` means no other signal
    may have changed (a sensor fault shows in one signal and nothing physically linked).
    """

    name: str
    needs: tuple[tuple[str, tuple[str, ...]], ...]
    cause: str
    action: str
    confidence: str
    only: bool = False


VIB = r"vibration"
TEMP = r"temperature|temp"
RULES: tuple[Rule, ...] = (
    Rule("frozen-sensor", ((r".", ("frozen",)),), "the sensor or its transmitter is stuck (reading frozen)",
         "check the sensor, its cable and the transmitter; compare with a hand-held reading", "high", only=True),
    Rule("noisy-sensor", ((r".", ("noisy",)),), "a noisy sensor: loose connector, damaged cable or interference",
         "check connector and shielding of this sensor", "medium", only=True),
    # A temperature above what the load explains, alone: a failing cooler looks exactly like a sensor
    # creeping up (nothing else moves), but it is the costlier cause, so it comes first. Falling
    # alone is no cooling fault: that one is left to the sensor rule below.
    Rule("temperature", ((TEMP, ("up", "drifting")),), "hotter than the load explains: a cooling problem (fan, "
         "coolant flow, blocked vents) or lack of lubrication; if both are fine, a drifting sensor",
         "check cooling fan, coolant level, vents and lubrication; then compare the reading with a hand-held "
         "thermometer", "low", only=True),
    # Vibration rising alone is the classic signature of imbalance, not of a drifting sensor.
    Rule("drifting-sensor", ((r"^(?!.*vibration)", ("drifting", "up", "down")),),
         "sensor drift: one reading moves while physically linked signals stay normal",
         "recalibrate or replace the sensor", "medium", only=True),
    Rule("bearing", ((VIB, ("up", "noisy")), (r"bearing|motor_temperature|winding", ("up", "drifting"))),
         "bearing wear or lack of lubrication", "check bearing lubrication, listen for noise, plan a bearing "
         "inspection", "medium"),
    Rule("cavitation", ((r"flow", ("down", "noisy")), (r"pressure", ("down", "noisy"))),
         "cavitation or a clogged suction filter (pump starved of liquid)", "check suction filter, inlet valve "
         "and tank level", "medium"),
    Rule("leak", ((r"pressure", ("down",)), (r"flow|cycle_time", ("up",))),
         "a leak (pressure lost while flow or cycle time rises)", "look for leaks at seals, hoses and valves",
         "medium"),
    Rule("filter", ((r"cycle_time", ("up", "drifting")),), "slow hydraulics: clogged filter or worn pump",
         "check the hydraulic filter indicator and pump pressure", "low"),
    Rule("clogged-filter", ((r"flow", ("down", "drifting")),), "reduced flow: clogged filter or partly closed "
         "valve", "check filters and valve positions", "low"),
    Rule("overheating", ((TEMP, ("up", "drifting")),), "a cooling problem (fan, coolant flow, blocked vents) "
         "or overload", "check cooling fan, coolant level and vents; compare the load with normal", "medium"),
    Rule("mechanical", ((VIB, ("up", "noisy")), (r"current|load", ("up",))),
         "misalignment or mechanical friction", "check coupling alignment and for rubbing parts", "medium"),
    Rule("vibration", ((VIB, ("up", "noisy")),), "imbalance, misalignment or loose mounting",
         "check mounting bolts, coupling alignment and rotor balance", "low"),
)  # fmt: skip


def matches(rule: Rule, patterns: dict[str, str]) -> bool:
    """Whether every condition of the rule holds on the changed signals."""
    changed = {s: p for s, p in patterns.items() if p != "normal"}
    used: set[str] = set()
    for kind, wanted in rule.needs:
        hit = [s for s, p in changed.items() if re.search(kind, s) and p in wanted and s not in used]
        if not hit:
            return False
        used.add(hit[0])
    return not rule.only or len(changed) == 1


def hint(patterns: dict[str, str]) -> dict[str, Any]:
    """The first matching rule as a hint, or a plain "no rule" hint."""
    for rule in RULES:
        if matches(rule, patterns):
            return {
                "rule": rule.name,
                "cause": rule.cause,
                "action": rule.action,
                "confidence": f"{rule.confidence}: a rule of thumb from the signal pattern; confirm on the machine",
            }
    return {
        "rule": None,
        "cause": "no known pattern",
        "action": "look at the top signals' trends and inspect the machine",
        "confidence": "none: no rule matched this combination of signals",
    }


def iso(t_s: float) -> str:
    """Seconds since the epoch as ISO 8601 UTC (what the alert JSON uses)."""
    return datetime.fromtimestamp(t_s, UTC).isoformat(timespec="seconds").replace("+00:00", "Z")


def explain(assessment: Assessment, since_s: float, model_version: str, top: int = 3) -> dict[str, Any]:
    """Ranked contributions, sigmas, patterns, since when, model version and a cause hint."""
    ranked = sorted(assessment.contributions.items(), key=lambda kv: kv[1], reverse=True)
    patterns = {}
    for s, share in ranked:
        p = pattern(assessment.feature_z[s])
        strong = assessment.sigmas[s] >= 2 * SIGNIFICANT_SIGMAS
        patterns[s] = p if share >= SIGNIFICANT_SHARE or strong else "normal"
    signals = [
        {
            "signal": s,
            "percent": round(100.0 * share, 1),
            "sigmas": round(assessment.sigmas[s], 1),
            "pattern": patterns[s],
        }
        for s, share in ranked
    ]
    head = ", ".join(
        f"{x['signal']} {x['pattern'] if x['pattern'] != 'normal' else 'unusual'} ({x['percent']:.0f} %, "
        f"{x['sigmas']:.1f} sigma)"
        for x in signals[:top]
    )
    found = hint(patterns)
    return {
        "summary": f"since {iso(since_s)}: {head}. Likely: {found['cause']}.",
        "since": iso(since_s),
        "signals": signals,
        "hint": found,
        "model_version": model_version,
    }
