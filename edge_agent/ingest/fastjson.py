"""The bridge's hot path: a JSON schema-1 telemetry payload to line protocol, as fast as Python allows.

Same contract as ``edge_agent.delivery.payloads.json_to_line_protocol``, the careful path (same lines, same
``PayloadError`` for every payload; ``tests/edge_agent/ingest/test_fast_paths.py`` checks it on a seeded
stream of mostly broken messages), much faster on well-formed messages (docs/delivery.md). It is the
only fast path: whatever it doubts goes straight to the careful path, never through a second one.

- ``orjson`` decodes the payload, faster than ``json``. Anything orjson refuses (bad JSON,
  NaN, integers beyond 64 bits, lone surrogates, ...) goes to the careful path, which
  either accepts it the way the agent's encoder expects or raises the precise error, so the two
  decoders can never disagree on the outcome.
- The escaped series key (``telemetry,site=…,tag=… ``) of each tag is kept in a dict per
  machine: one dict lookup per sample instead of a cached five-argument call. Names are checked
  (``edge_agent.core.identifiers``) once, when they enter the cache.
- ``expected``, the identity the topic names, must be the one the payload claims: one tuple comparison.
- Nesting: orjson refuses more than 1024 levels, and a message with a key the agent does not send
  goes to the careful path, which refuses more than 64. The one difference left: an unknown key
  inside a sample, nested 65 to 1024 levels deep, is ignored here (its points are written) and
  refused there; checking every payload's depth would cost the hot path a tenth of its time.

Whatever is not plainly valid is handed to the careful path, which has the last word.
"""

from __future__ import annotations

import math
from typing import Any

import orjson

from edge_agent.core.errors import PayloadError
from edge_agent.core.identifiers import escape_identifier, is_identifier
from edge_agent.core.payload_json import MAX_PAYLOAD_BYTES
from edge_agent.delivery.payloads import (
    _QUALITY_FIELDS,
    INFLUX_MAX_NS,
    INFLUX_MIN_NS,
    MEASUREMENT,
    SCHEMA_VERSION,
    _escape_string_field,
    decode_json,
    to_line_protocol,
)

__all__ = ["format_floats", "identity_mismatch", "telemetry_lines"]

Identity = tuple[str, str, str, str]
"""site, area, line, machine: what a topic names and a payload claims."""

_MESSAGE_KEYS = 7  # schema, site, area, line, machine, polled_at, samples: what the agent sends
_MAX_SERIES = 16384  # cached series keys; the cache starts afresh beyond (a plant has far fewer tags)
_machines: dict[Identity, tuple[str, dict[str, str]]] = {}
_cached = 0


def _machine_series(identity: Identity) -> tuple[str, dict[str, str]] | None:
    """The escaped series prefix of a machine and its tags' series keys; None if a name cannot be written."""
    global _cached  # noqa: PLW0603 - one process-wide bound for the cache
    known = _machines.get(identity)
    if known is None:
        if not all(is_identifier(name) for name in identity):
            return None
        if _cached >= _MAX_SERIES:
            _machines.clear()
            _cached = 0
        site, area, line, machine = (escape_identifier(name) for name in identity)
        known = _machines[identity] = (f"{MEASUREMENT},site={site},area={area},line={line},machine={machine}", {})
    return known


def _series_of(series: dict[str, str], prefix: str, tag: str) -> str | None:
    global _cached  # noqa: PLW0603
    if not is_identifier(tag):
        return None
    text = f"{prefix},tag={escape_identifier(tag)} "
    series[tag] = text
    _cached += 1
    return text


def _lines(message: Any, expected: Identity | None) -> list[str] | None:  # noqa: PLR0911, PLR0912 - one flat loop
    """The lines of a plainly valid message; None at the first doubt (the careful path decides)."""
    if type(message) is not dict or len(message) != _MESSAGE_KEYS or message.get("schema") != SCHEMA_VERSION:
        return None  # an unknown key (possibly nested deep) is for the careful path to judge
    site, area, line, machine = message.get("site"), message.get("area"), message.get("line"), message.get("machine")
    samples = message.get("samples")
    if (
        type(site) is not str
        or type(area) is not str
        or type(line) is not str
        or type(machine) is not str
        or type(message.get("polled_at")) is not int
        or type(samples) is not list
    ):
        return None
    identity = (site, area, line, machine)
    if expected is not None and identity != expected:
        return None
    known = _machine_series(identity)
    if known is None:
        return None
    prefix, series = known
    quality_fields = _QUALITY_FIELDS
    isfinite = math.isfinite
    earliest, latest = INFLUX_MIN_NS, INFLUX_MAX_NS
    lines: list[str] = []
    append = lines.append
    numbers: list[float] = []  # numeric values, formatted together at the end
    slots: list[tuple[int, str, str, str, int]] = []  # where each number goes: index, key, quality, reason, time
    for item in samples:
        if type(item) is not dict:
            return None
        get: Any = item.get
        tag, timestamp, quality, value = get("tag"), get("t"), get("q"), get("v")
        quality_field = quality_fields.get(quality)
        if (
            type(tag) is not str
            or type(timestamp) is not int
            or quality_field is None
            or not earliest <= timestamp <= latest
        ):
            return None
        if len(item) > 4 or value is None:  # with tag, t, q and v present, a 5th key is needed for them
            reason, unit = get("reason"), get("unit")
            if (reason is not None and type(reason) is not str) or (unit is not None and type(unit) is not str):
                return None
            reason_field = f",reason={_escape_string_field(reason)}" if reason else ""
        else:
            reason_field = ""
        key = series.get(tag) or _series_of(series, prefix, tag)
        if key is None:
            return None
        kind = type(value)
        if kind is float or kind is int:
            number = value if kind is float else float(value)  # OverflowError beyond the float range: fall back
            if not isfinite(number):
                return None
            numbers.append(number)
            slots.append((len(lines), key, quality_field, reason_field, timestamp))
            append("")
            continue
        if kind is bool:
            value_field = ",value_bool=true" if value else ",value_bool=false"
        elif kind is str:
            value_field = f",value_str={_escape_string_field(value)}"
        elif value is None and quality != "good":
            value_field = ""
        else:
            return None
        append(f"{key}{quality_field}{value_field}{reason_field} {timestamp}")
    if numbers:
        for (index, key, quality_field, reason_field, timestamp), text in zip(
            slots, format_floats(numbers), strict=True
        ):
            lines[index] = f"{key}{quality_field},value={text}{reason_field} {timestamp}"
    return lines


def format_floats(numbers: list[float]) -> list[str]:
    """``[repr(x) for x in numbers]`` (finite floats), in one orjson call instead of one repr each.

    orjson and ``repr`` both write the shortest text that reads back as the same double; they only
    differ in notation: orjson writes 1e-5 <= |x| < 1e-4 in plain decimals and its exponents
    without padding. Those (and every text with an exponent) are redone with ``repr``, so the
    result is exactly ``repr``'s (tests/edge_agent/ingest/test_fast_paths.py checks it).
    """
    texts = orjson.dumps(numbers).decode()[1:-1].split(",")
    for index, text in enumerate(texts):
        if "e" in text or text.startswith(("0.0000", "-0.0000")):
            texts[index] = repr(numbers[index])
    return texts


def telemetry_lines(payload: bytes, expected: Identity | None = None) -> list[str]:
    """``json_to_line_protocol(payload)``, faster. Raises ``PayloadError`` saying what is wrong.

    ``expected``: the identity the topic names; a message claiming another one is refused.
    """
    if len(payload) > MAX_PAYLOAD_BYTES:
        return _careful(payload, expected)  # raises, with the size in the message
    try:
        lines = _lines(orjson.loads(payload), expected)
    except (orjson.JSONDecodeError, OverflowError):
        lines = None  # OverflowError: an integer value beyond the float range
    return _careful(payload, expected) if lines is None else lines


def _careful(payload: bytes, expected: Identity | None) -> list[str]:
    telemetry = decode_json(payload)
    if expected is not None:
        origin = telemetry.origin
        mismatch = identity_mismatch((origin.site, origin.area, origin.line, origin.machine), expected)
        if mismatch is not None:
            raise PayloadError(mismatch)
    return to_line_protocol(telemetry)


def identity_mismatch(claimed: tuple[object, ...], expected: Identity) -> str | None:
    """Why a payload claiming ``claimed`` cannot come on the topic of ``expected`` (None when they agree)."""
    for key, value, wanted in zip(("site", "area", "line", "machine"), claimed, expected, strict=True):
        if value != wanted:
            return (
                f"identity does not match the topic: {key} is {str(value)[:60]!r} in the payload but "
                f"{wanted[:60]!r} in the topic. Fix: publish each machine on its own topic"
            )
    return None
