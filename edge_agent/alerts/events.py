"""Alert events and anomaly scores as InfluxDB line protocol: pure conversions, no I/O.

The agent publishes alert events (schema 1, docs/models.md) on ``…/{machine}/alerts`` and anomaly
scores (schema 1) on ``…/{machine}/scores``. The ingest bridge writes both to InfluxDB with these
functions, and the direct InfluxDB sink can reuse them, so both paths produce the same points.

Point identity (what makes a redelivered event overwrite itself instead of adding a row, the same
contract as telemetry, docs/payloads.md):

- ``alerts``: tags site, area, line, machine, severity, event; timestamp ``at``. One point per event:
  a raise and its clear are two points; a second copy of the same event lands on the first.
- ``anomaly_score``: tags site, area, line, machine, detector; timestamp ``at`` (the window end).

Numbers are always written as floats (an integer ``0`` in one message and ``0.5`` in the next must
not make InfluxDB refuse the second with a field type conflict). A ``null`` field is left out.
Every problem is a ``PayloadError`` naming the key, so the bridge can dead-letter the message with
a reason a person can act on.
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any

from edge_agent.core.errors import PayloadError
from edge_agent.core.identifiers import escape_identifier
from edge_agent.core.payload_json import load_json

__all__ = [
    "ALERT_MEASUREMENT",
    "EVENT_SCHEMA",
    "SCORE_MEASUREMENT",
    "alert_event_to_line",
    "alert_payload_to_lines",
    "iso_to_ns",
    "score_payload_to_lines",
    "score_to_line",
    "signals_text",
]

EVENT_SCHEMA = 1
ALERT_MEASUREMENT = "alerts"
SCORE_MEASUREMENT = "anomaly_score"
_SIGNALS_IN_TEXT = 3
# InfluxDB stores int64 nanoseconds; it refuses the two extremes too.
_MIN_NS = -9_223_372_036_854_775_806
_MAX_NS = 9_223_372_036_854_775_806
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_ISO = re.compile(r"(\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d)(?:\.(\d{1,9}))?(Z|[+-]\d\d:\d\d)", re.ASCII)


def _string_field(text: str) -> str:
    return '"' + text.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n") + '"'


def iso_to_ns(text: object, key: str = "at") -> int:
    """ISO 8601 UTC (``2026-01-05T14:15:31Z``, optional fraction up to ns, ``Z`` or ``±hh:mm``) → ns.

    A time without a zone is refused: it would be read in whatever zone the reader lives in.
    """
    if not isinstance(text, str):
        raise PayloadError(f"{key!r} must be an ISO 8601 time string, got {type(text).__name__}")
    match = _ISO.fullmatch(text)
    if match is None:
        raise PayloadError(
            f"{key!r}: {text[:40]!r} is not an ISO 8601 UTC time like 2026-01-05T14:15:31Z (a zone is required)"
        )
    whole, fraction, zone = match.groups()
    try:
        moment = datetime.fromisoformat(whole + ("+00:00" if zone == "Z" else zone))
    except ValueError as exc:
        raise PayloadError(f"{key!r}: {text[:40]!r} is not a valid time ({exc})") from None
    delta = moment - _EPOCH  # whole seconds: the fraction is added in integers, exact to the nanosecond
    ns = (delta.days * 86_400 + delta.seconds) * 1_000_000_000 + int((fraction or "").ljust(9, "0"))
    if not _MIN_NS <= ns <= _MAX_NS:
        raise PayloadError(f"{key!r}: {text} is outside the range InfluxDB can store (years 1677 to 2262)")
    return ns


def _text(obj: Mapping[str, Any], key: str, *, tag: bool = False, optional: bool = False) -> str | None:
    value = obj.get(key)
    if value is None:
        if optional:
            return None
        raise PayloadError(f"missing key {key!r}" if key not in obj else f"{key!r} must be a string, got null")
    if not isinstance(value, str):
        raise PayloadError(f"{key!r} must be a string, got {type(value).__name__}")
    if tag and (not value or "\n" in value):
        raise PayloadError(f"{key!r} must be a non-empty string without line breaks (it becomes a tag)")
    return value


def _number(obj: Mapping[str, Any], key: str, *, optional: bool = False) -> float | None:
    value = obj.get(key)
    if value is None:
        if optional:
            return None
        raise PayloadError(f"missing key {key!r}" if key not in obj else f"{key!r} must be a number, got null")
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise PayloadError(f"{key!r} must be a number, got {type(value).__name__}")
    try:
        number = float(value)
    except OverflowError:
        raise PayloadError(f"{key!r} is beyond the float range") from None
    if not math.isfinite(number):
        raise PayloadError(f"{key!r} is {value}; values must be finite numbers")
    return number


def _flag(obj: Mapping[str, Any], key: str) -> bool:
    value = obj.get(key)
    if not isinstance(value, bool):
        what = "missing" if key not in obj else f"a {type(value).__name__}"
        raise PayloadError(f"{key!r} must be true or false, got {what}")
    return value


def _check_schema(obj: object, what: str) -> Mapping[str, Any]:
    if not isinstance(obj, dict):
        raise PayloadError(f"{what}: top level must be a JSON object")
    if obj.get("schema") != EVENT_SCHEMA:
        raise PayloadError(
            f"{what}: unsupported schema {obj.get('schema')!r}; this version reads schema {EVENT_SCHEMA}"
        )
    return obj


def _series(measurement: str, obj: Mapping[str, Any], keys: tuple[str, ...]) -> str:
    tags = ",".join(f"{key}={escape_identifier(str(_text(obj, key, tag=True)), repr(key))}" for key in keys)
    return f"{measurement},{tags}"


def _fields(items: list[tuple[str, object]]) -> str:
    """``key=value`` pairs; None values are left out, floats as floats, bools as true/false."""
    parts = []
    for key, value in items:
        if value is None:
            continue
        if isinstance(value, bool):
            parts.append(f"{key}={'true' if value else 'false'}")
        elif isinstance(value, float):
            parts.append(f"{key}={value!r}")
        else:
            parts.append(f"{key}={_string_field(str(value))}")
    return ",".join(parts)


def signals_text(signals: object, top: int = _SIGNALS_IN_TEXT) -> str:
    """The leading signals of an explanation in a few words: ``vibration_rms up 63.1 %, …``."""
    if not isinstance(signals, list):
        raise PayloadError(f"'signals' must be a list, got {type(signals).__name__}")
    words = []
    for index, item in enumerate(signals[:top]):
        if not isinstance(item, dict) or not isinstance(item.get("signal"), str):
            raise PayloadError(f"signals[{index}] must be an object with a string 'signal'")
        text = item["signal"]
        pattern = item.get("pattern")
        if isinstance(pattern, str) and pattern:
            text += f" {pattern}"
        percent = item.get("percent")
        if isinstance(percent, int | float) and not isinstance(percent, bool) and math.isfinite(percent):
            text += f" {percent:g} %"
        words.append(text)
    return ", ".join(words)


def _hint_text(hint: object) -> str | None:
    if hint is None:
        return None
    if not isinstance(hint, dict):
        raise PayloadError(f"'hint' must be an object or null, got {type(hint).__name__}")
    cause, action = hint.get("cause"), hint.get("action")
    parts = [part for part in (cause, action) if isinstance(part, str) and part]
    return "; ".join(parts) if parts else None


def alert_event_to_line(event: Mapping[str, Any]) -> str:
    """One alert event (schema 1) as one ``alerts`` point. Raises ``PayloadError`` naming the key."""
    event = _check_schema(event, "alert event")
    series = _series(ALERT_MEASUREMENT, event, ("site", "area", "line", "machine", "severity", "event"))
    timestamp = iso_to_ns(event.get("at"))
    fields = _fields(
        [
            ("alert_id", _text(event, "alert_id")),
            ("active", _flag(event, "active")),
            ("acknowledged", _flag(event, "acknowledged")),
            ("acknowledged_by", _text(event, "acknowledged_by", optional=True)),
            ("level", _number(event, "level")),
            ("peak_level", _number(event, "peak_level")),
            ("score", _number(event, "score", optional=True)),
            ("threshold", _number(event, "threshold", optional=True)),
            ("summary", _text(event, "summary", optional=True)),
            ("hint", _hint_text(event.get("hint"))),
            ("signals", signals_text(event.get("signals", []))),
            ("detector", _text(event, "detector", optional=True)),
            ("model_version", _text(event, "model_version", optional=True)),
        ]
    )
    return f"{series} {fields} {timestamp}"


def score_to_line(score: Mapping[str, Any]) -> str:
    """One anomaly score (schema 1) as one ``anomaly_score`` point. Raises ``PayloadError``."""
    score = _check_schema(score, "anomaly score")
    series = _series(SCORE_MEASUREMENT, score, ("site", "area", "line", "machine", "detector"))
    timestamp = iso_to_ns(score.get("at"))
    fields = _fields(
        [
            ("score", _number(score, "score")),
            ("threshold", _number(score, "threshold")),
            ("level", _number(score, "level")),
            ("operating_state", _text(score, "operating_state", optional=True)),
            ("model_version", _text(score, "model_version", optional=True)),
        ]
    )
    return f"{series} {fields} {timestamp}"


def alert_payload_to_lines(payload: bytes) -> list[str]:
    """An MQTT ``…/alerts`` payload (one JSON event) as line protocol (one line)."""
    return [alert_event_to_line(load_json(payload))]


def score_payload_to_lines(payload: bytes) -> list[str]:
    """An MQTT ``…/scores`` payload (one JSON score) as line protocol (one line)."""
    return [score_to_line(load_json(payload))]
