"""Telemetry payloads on MQTT and the InfluxDB points they become.

JSON schema (``schema: 1``), one message per poll of one machine::

    {"schema": 1, "site": "s", "area": "a", "line": "l", "machine": "pump-1",
     "polled_at": 1763800000123456789,
     "samples": [{"tag": "flow", "t": 1763800000120000000, "v": 12.5, "q": "good", "unit": "m3/h"},
                 {"tag": "pressure", "t": 1763800000120000000, "v": null, "q": "bad",
                  "reason": "Modbus exception 2 (illegal data address)"}]}

``t`` and ``polled_at`` are integer nanoseconds since the Unix epoch, UTC. ``v`` is a number,
boolean, string or null (null only with ``q`` other than good).

Point identity in InfluxDB (see docs/payloads.md): measurement ``telemetry``; tags ``site``,
``area``, ``line``, ``machine``, ``tag``; timestamp ``t``. Fields: ``value`` (float, for numbers),
``value_bool``, ``value_str``, ``quality`` and, when present, ``reason``. A redelivered message
therefore writes the same series and timestamp again and overwrites itself: no duplicates.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from typing import Any

from edge_agent.core.errors import PayloadError
from edge_agent.core.identifiers import escape_identifier
from edge_agent.core.origin import Origin
from edge_agent.core.payload_json import load_json
from edge_agent.core.samples import Batch, Quality, Sample, Value

SCHEMA_VERSION = 1
MEASUREMENT = "telemetry"
# InfluxDB stores int64 nanoseconds and refuses the two extremes too (a point beyond is a syntax error
# that makes it refuse the whole batch around it).
INFLUX_MIN_NS = -9_223_372_036_854_775_806
INFLUX_MAX_NS = 9_223_372_036_854_775_806


def _finite(sample: Sample) -> Sample:
    """NaN and infinity are not valid JSON nor line protocol: report them as bad readings."""
    if isinstance(sample.value, float) and not math.isfinite(sample.value):
        return Sample.bad(
            sample.tag, f"value is not a finite number ({sample.value})", sample.timestamp_ns, sample.unit
        )
    return sample


def encode_json(batch: Batch, origin: Origin) -> bytes:
    """One poll as a schema-1 JSON payload."""
    samples: list[dict[str, Any]] = []
    for raw in batch.samples:
        sample = _finite(raw)
        item: dict[str, Any] = {
            "tag": sample.tag,
            "t": sample.timestamp_ns,
            "v": sample.value,
            "q": str(sample.quality),
        }
        if sample.reason:
            item["reason"] = sample.reason
        if sample.unit:
            item["unit"] = sample.unit
        samples.append(item)
    message = {
        "schema": SCHEMA_VERSION,
        "site": origin.site,
        "area": origin.area,
        "line": origin.line,
        "machine": origin.machine,
        "polled_at": batch.polled_at_ns,
        "samples": samples,
    }
    return json.dumps(message, allow_nan=False, separators=(",", ":")).encode()


@dataclass(frozen=True, slots=True)
class Telemetry:
    """A decoded, validated telemetry message."""

    origin: Origin
    polled_at_ns: int
    samples: tuple[Sample, ...]


def _require(obj: dict[str, Any], key: str, kind: type | tuple[type, ...], where: str) -> Any:
    if key not in obj:
        raise PayloadError(f"{where}: missing key {key!r}")
    value = obj[key]
    if not isinstance(value, kind) or (isinstance(value, bool) and kind is not bool and bool not in _as_tuple(kind)):
        raise PayloadError(f"{where}: {key!r} must be {_kind_name(kind)}, got {type(value).__name__}")
    return value


def _as_tuple(kind: type | tuple[type, ...]) -> tuple[type, ...]:
    return kind if isinstance(kind, tuple) else (kind,)


def _kind_name(kind: type | tuple[type, ...]) -> str:
    return " or ".join(k.__name__ for k in _as_tuple(kind))


def decode_json(payload: bytes) -> Telemetry:
    """Parse and validate a schema-1 payload. Raises ``PayloadError`` saying what is wrong."""
    return _validate(load_json(payload))


def _validate(message: Any) -> Telemetry:
    if not isinstance(message, dict):
        raise PayloadError("top level must be a JSON object")
    if message.get("schema") != SCHEMA_VERSION:
        raise PayloadError(f"unsupported schema {message.get('schema')!r}; this version reads schema {SCHEMA_VERSION}")
    origin = Origin(*(_require(message, k, str, "message") for k in ("site", "area", "line", "machine")))
    polled_at = _require(message, "polled_at", int, "message")
    raw_samples = _require(message, "samples", list, "message")
    samples = []
    for index, item in enumerate(raw_samples):
        where = f"samples[{index}]"
        if not isinstance(item, dict):
            raise PayloadError(f"{where}: must be an object")
        tag = _require(item, "tag", str, where)
        timestamp = _require(item, "t", int, where)
        quality_text = _require(item, "q", str, where)
        try:
            quality = Quality(quality_text)
        except ValueError as exc:
            raise PayloadError(f"{where}: q must be good, uncertain or bad, got {quality_text!r}") from exc
        value: Value | None = item.get("v")
        if value is None and quality is Quality.GOOD:
            raise PayloadError(f"{where}: a good sample needs a value 'v'")
        if value is not None and not isinstance(value, int | float | str | bool):
            raise PayloadError(f"{where}: 'v' must be a number, boolean, string or null")
        if isinstance(value, float) and not math.isfinite(value):
            raise PayloadError(f"{where}: 'v' is {value}; values must be finite numbers")
        reason = item.get("reason")
        unit = item.get("unit")
        if reason is not None and not isinstance(reason, str):
            raise PayloadError(f"{where}: 'reason' must be a string")
        if unit is not None and not isinstance(unit, str):
            raise PayloadError(f"{where}: 'unit' must be a string")
        samples.append(Sample(tag, value, timestamp, quality, reason, unit))
    return Telemetry(origin, polled_at, tuple(samples))


def _escape_string_field(text: str) -> str:
    return '"' + text.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n") + '"'


def sample_line(origin: Origin, sample: Sample) -> str:
    """The InfluxDB line-protocol point of one sample (nanosecond precision)."""
    tags = (
        f"{MEASUREMENT},site={escape_identifier(origin.site, 'site')},area={escape_identifier(origin.area, 'area')},"
        f"line={escape_identifier(origin.line, 'line')},machine={escape_identifier(origin.machine, 'machine')},"
        f"tag={escape_identifier(sample.tag, 'tag')}"
    )
    if not INFLUX_MIN_NS <= sample.timestamp_ns <= INFLUX_MAX_NS:
        raise PayloadError(
            f"tag {sample.tag!r}: timestamp {str(sample.timestamp_ns)[:40]} is outside the range InfluxDB can store "
            "(int64 nanoseconds, years 1677 to 2262)"
        )
    fields = [f"quality={_escape_string_field(str(sample.quality))}"]
    value = sample.value
    if isinstance(value, bool):
        fields.append(f"value_bool={'true' if value else 'false'}")
    elif isinstance(value, int | float):
        try:
            number = float(value)
        except OverflowError:  # an integer beyond the float range
            raise PayloadError(f"tag {sample.tag!r}: integer value is beyond the float range") from None
        if not math.isfinite(number):
            raise PayloadError(f"tag {sample.tag!r}: value {value} is not a finite number")
        fields.append(f"value={number!r}")
    elif isinstance(value, str):
        fields.append(f"value_str={_escape_string_field(value)}")
    if sample.reason:
        fields.append(f"reason={_escape_string_field(sample.reason)}")
    return f"{tags} {','.join(fields)} {sample.timestamp_ns}"


def to_line_protocol(telemetry: Telemetry) -> list[str]:
    """All points of a decoded message, one line each."""
    return [sample_line(telemetry.origin, sample) for sample in telemetry.samples]


_QUALITY_FIELDS = {q.value: f"quality={_escape_string_field(q.value)}" for q in Quality}
"""``quality="good"`` etc.: the field text of each quality, for the bridge's hot path (edge_agent.ingest.fastjson)."""


def json_to_line_protocol(payload: bytes) -> list[str]:
    """``to_line_protocol(decode_json(payload))``: the careful path, the reference for every payload.

    The bridge's hot path (``edge_agent.ingest.fastjson.telemetry_lines``) gives the same lines and
    the same errors, faster, and hands anything not plainly valid to this function.
    """
    return to_line_protocol(decode_json(payload))


def encode_line_protocol(batch: Batch, origin: Origin) -> bytes:
    """One poll as InfluxDB line protocol (for sites that ingest with Telegraf's mqtt_consumer)."""
    return "\n".join(sample_line(origin, _finite(s)) for s in batch.samples).encode()
