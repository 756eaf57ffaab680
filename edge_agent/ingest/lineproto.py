"""A light check of InfluxDB line protocol arriving over MQTT, before it is passed through to InfluxDB.

Publishers may send line protocol instead of JSON (``mqtt.payload_format: line``, or a Telegraf
pipeline). The bridge forwards those lines unchanged, but checks their shape first so that one
broken message is counted and set aside on its own, instead of making InfluxDB reject a whole
batch of other machines' points. The check is structural (measurement, tags, typed fields, an
integer timestamp), not a full parser: InfluxDB still has the last word, and the bridge handles its
rejections too.

A timestamp is required: without one InfluxDB stamps the point with its arrival time, so a
redelivered message would duplicate instead of overwriting itself. A timestamp below 10^15 is
refused too: in nanoseconds that is January 1970, so it is almost surely seconds or milliseconds
sent to a bridge that writes with ``precision=ns``.
"""

from __future__ import annotations

import re

from edge_agent.core.errors import PayloadError
from edge_agent.core.payload_json import MAX_PAYLOAD_BYTES

__all__ = ["MIN_TIMESTAMP_NS", "check_line_protocol"]

MIN_TIMESTAMP_NS = 10**15
_FLOAT = re.compile(r"^[+-]?(?:\d+(?:\.\d*)?|\.\d+)(?:[eE][+-]?\d+)?$")
_INT = re.compile(r"^[+-]?\d+i$")
_UINT = re.compile(r"^\d+u$")
_TIMESTAMP = re.compile(r"^-?\d+$")
_BOOLEANS = frozenset({"t", "T", "true", "True", "TRUE", "f", "F", "false", "False", "FALSE"})

# The fast path: one regular expression for the common shape of a point (no unescaped double quotes
# in names, single spaces between the sections). It accepts a subset of what ``_check_line`` accepts;
# anything it does not match goes through ``_check_line``, which accepts it or says what is wrong.
_NAME = r'(?:[^ ,=\\"]|\\.)+'  # a backslash escapes the next character
_FIELD_VALUE = (
    r'(?:"(?:[^"\\]|\\.)*"'  # a string, escapes allowed
    r"|[+-]?[0-9]+i|[0-9]+u"  # integers
    r"|[+-]?(?:[0-9]+(?:\.[0-9]*)?|\.[0-9]+)(?:[eE][+-]?[0-9]+)?"  # floats (no ambiguous repeats)
    r"|t|T|true|True|TRUE|f|F|false|False|FALSE)"
)
_FIELD = f"{_NAME}={_FIELD_VALUE}"
_SIMPLE_LINE = re.compile(
    rf'(?:[^ ,\\"]|\\.)+(?:,{_NAME}={_NAME})* {_FIELD}(?:,{_FIELD})* (-?[0-9]+)', re.ASCII | re.DOTALL
)


def _split(text: str, separator: str, *, quotes: bool, limit: int = -1) -> list[str]:
    """Split on ``separator`` where it is not backslash-escaped (nor inside "..." when ``quotes``)."""
    parts: list[str] = []
    current: list[str] = []
    escaped = in_quotes = False
    for char in text:
        if escaped:
            current.append(char)
            escaped = False
        elif char == "\\":
            current.append(char)
            escaped = True
        elif quotes and char == '"':
            current.append(char)
            in_quotes = not in_quotes
        elif char == separator and not in_quotes and (limit < 0 or len(parts) < limit):
            parts.append("".join(current))
            current = []
        else:
            current.append(char)
    if in_quotes:
        raise PayloadError("a string field value has no closing double quote")
    parts.append("".join(current))
    return parts


def _check_key_value(item: str, what: str) -> tuple[str, str]:
    pieces = _split(item, "=", quotes=False, limit=1)
    if len(pieces) != 2 or not pieces[0] or not pieces[1]:
        raise PayloadError(f"{what} {item!r} is not key=value")
    return pieces[0], pieces[1]


def _check_field_value(key: str, value: str) -> None:
    if value.startswith('"'):
        if len(value) < 2 or not value.endswith('"'):
            raise PayloadError(f"field {key!r}: string value must be in double quotes")
        return
    if value in _BOOLEANS or _INT.match(value) or _UINT.match(value):
        return
    if _FLOAT.match(value):
        return
    raise PayloadError(f"field {key!r}: {value[:40]!r} is not a number, boolean or quoted string")


def _check_line(line: str) -> None:
    sections = _split(line, " ", quotes=True)
    if len(sections) != 3:
        if len(sections) == 2 and "=" not in sections[1]:
            raise PayloadError("a point needs at least one field (key=value) between the tags and the timestamp")
        if len(sections) == 2:
            raise PayloadError(
                "no timestamp: without one InfluxDB uses the arrival time and a redelivered message "
                "would duplicate its points. Fix: send the sample time in nanoseconds"
            )
        raise PayloadError(f"expected 'measurement[,tags] fields timestamp', got {len(sections)} space-separated parts")
    series, fields, timestamp = sections
    series_parts = _split(series, ",", quotes=False)
    if not series_parts[0]:
        raise PayloadError("the measurement name is empty")
    for tag in series_parts[1:]:
        _check_key_value(tag, "tag")
    if not fields:
        raise PayloadError("a point needs at least one field")
    for field in _split(fields, ",", quotes=True):
        key, value = _check_key_value(field, "field")
        _check_field_value(key, value)
    if not _TIMESTAMP.match(timestamp):
        raise PayloadError(f"timestamp {timestamp[:40]!r} is not an integer")
    if int(timestamp) < MIN_TIMESTAMP_NS:
        raise PayloadError(
            f"timestamp {timestamp} is before 1970-01-12 in nanoseconds: it looks like seconds or milliseconds. "
            "Fix: send nanoseconds since the Unix epoch"
        )


def check_line_protocol(payload: bytes) -> list[str]:
    """The non-empty, non-comment lines of ``payload``, each checked; ``PayloadError`` names the line."""
    if len(payload) > MAX_PAYLOAD_BYTES:
        raise PayloadError(f"payload of {len(payload)} bytes exceeds the {MAX_PAYLOAD_BYTES}-byte limit")
    try:
        text = payload.decode()
    except UnicodeDecodeError as exc:
        raise PayloadError(f"line protocol is not valid UTF-8: {exc}") from exc
    lines: list[str] = []
    for number, raw in enumerate(text.split("\n"), start=1):
        line = raw.rstrip("\r")
        if not line.strip() or line.lstrip().startswith("#"):
            continue
        simple = _SIMPLE_LINE.fullmatch(line)
        if simple is not None and int(simple.group(1)) >= MIN_TIMESTAMP_NS:
            lines.append(line)
            continue
        try:
            _check_line(line)
        except PayloadError as exc:
            raise PayloadError(f"line protocol, line {number}: {exc}") from None
        lines.append(line)
    if not lines:
        raise PayloadError("payload is empty: neither JSON (starting with '{') nor a line-protocol point")
    return lines
