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
sent to a bridge that writes with ``precision=ns``. Numbers must fit what InfluxDB stores (int64
timestamps and integers, uint64, finite floats), checked before they are converted, so a number of
thousands of digits costs nothing.

Names follow the one rule of ``edge_agent.core.identifiers`` (no control characters, no leading
``#``, not empty). A point may only go to a measurement the config allows
(``ingest.line_protocol_measurements``), and its ``site``, ``area``, ``line`` and ``machine`` tags
must be those of the topic it came on, so a publisher can only write its own machine's points.
"""

from __future__ import annotations

import math
import re
from collections.abc import Collection

from edge_agent.core.errors import PayloadError
from edge_agent.core.identifiers import MAX_IDENTIFIER_CHARS, escape_identifier, identifier_problem
from edge_agent.core.payload_json import MAX_PAYLOAD_BYTES
from edge_agent.delivery.payloads import INFLUX_MAX_NS

__all__ = ["IDENTITY_TAGS", "MIN_TIMESTAMP_NS", "check_line_protocol"]

MIN_TIMESTAMP_NS = 10**15
IDENTITY_TAGS = ("site", "area", "line", "machine")
_INT64_MAX = 2**63 - 1
_UINT64_MAX = 2**64 - 1
_FLOAT = re.compile(r"^[+-]?(?:[0-9]+(?:\.[0-9]*)?|\.[0-9]+)(?:[eE][+-]?[0-9]+)?$", re.ASCII)
_INT = re.compile(r"^[+-]?[0-9]{1,25}i$", re.ASCII)
_UINT = re.compile(r"^[0-9]{1,25}u$", re.ASCII)
_TIMESTAMP = re.compile(r"^-?[0-9]{1,19}$", re.ASCII)
_ESCAPED_SEPARATOR = re.compile(r"\\([ ,=])")
_BOOLEANS = frozenset({"t", "T", "true", "True", "TRUE", "f", "F", "false", "False", "FALSE"})

# The fast path: one regular expression for the common shape of a point (no unescaped double quotes
# in names, single spaces between the sections). It accepts a subset of what ``_check_line`` accepts;
# anything it does not match goes through ``_check_line``, which accepts it or says what is wrong.
# Names hold no control characters (nor escaped ones) and do not start with '#'; numbers are short
# enough to fit (18 digits always fit an int64, 20 digits and a 2-digit exponent a finite double).
_CHAR = r'(?:[^ ,=\\"\x00-\x1f\x7f]|\\[ ,=])'  # a backslash escapes a separator, nothing else
_NAME = f"(?!#){_CHAR}+"
_FIELD_VALUE = (
    r'(?:"(?:[^"\\]|\\.)*"'  # a string, escapes allowed
    r"|[+-]?[0-9]{1,18}i|[0-9]{1,19}u"  # integers
    r"|[+-]?(?:[0-9]{1,20}(?:\.[0-9]*)?|\.[0-9]+)(?:[eE][+-]?[0-9]{1,2})?"  # floats (no ambiguous repeats)
    r"|t|T|true|True|TRUE|f|F|false|False|FALSE)"
)
_FIELD = f"{_NAME}={_FIELD_VALUE}"
_SIMPLE_LINE = re.compile(
    rf'(?P<measurement>(?!#)(?:[^ ,\\"\x00-\x1f\x7f]|\\[ ,=])+)(?P<tags>(?:,{_NAME}={_NAME})*) '
    rf"{_FIELD}(?:,{_FIELD})* (?P<time>-?[0-9]{{1,19}})",
    re.ASCII | re.DOTALL,
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


def _check_name(text: str, what: str) -> None:
    """The one identifier rule, on the name as read (its escaped separators unescaped)."""
    problem = identifier_problem(_ESCAPED_SEPARATOR.sub(r"\1", text))
    if problem is not None:
        raise PayloadError(f"{what} {text[:60]!r} {problem}")


def _check_key_value(item: str, what: str) -> tuple[str, str]:
    pieces = _split(item, "=", quotes=False, limit=1)
    if len(pieces) != 2 or not pieces[0] or not pieces[1]:
        raise PayloadError(f"{what} {item[:60]!r} is not key=value")
    _check_name(pieces[0], f"{what} key")
    if what == "tag":
        _check_name(pieces[1], f"tag {pieces[0][:60]!r}: value")
    return pieces[0], pieces[1]


def _check_field_value(key: str, value: str) -> None:
    if value.startswith('"'):
        if len(value) < 2 or not value.endswith('"'):
            raise PayloadError(f"field {key!r}: string value must be in double quotes")
        return
    if value in _BOOLEANS:
        return
    if _INT.match(value) or _UINT.match(value):
        number, limit = int(value[:-1]), _INT64_MAX if value.endswith("i") else _UINT64_MAX
        if not -limit - 1 <= number <= limit:
            raise PayloadError(f"field {key!r}: {value[:40]} is beyond the range InfluxDB stores")
        return
    if _FLOAT.match(value):
        mantissa = value.lower().partition("e")[0]
        if len(mantissa) > 400 or not math.isfinite(float(value)):  # float() is quadratic on huge texts
            raise PayloadError(f"field {key!r}: {value[:40]}... is not a finite double")
        return
    raise PayloadError(f"field {key!r}: {value[:40]!r} is not a number, boolean or quoted string")


def _check_line(line: str) -> tuple[str, list[tuple[str, str]]]:
    """Check a point's shape; its measurement and tags (as written, escaped) for the identity check."""
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
    _check_name(series_parts[0], "the measurement name")
    tags = [_check_key_value(tag, "tag") for tag in series_parts[1:]]
    if not fields:
        raise PayloadError("a point needs at least one field")
    for field in _split(fields, ",", quotes=True):
        key, value = _check_key_value(field, "field")
        _check_field_value(key, value)
    if not _TIMESTAMP.match(timestamp):
        raise PayloadError(f"timestamp {timestamp[:40]!r} is not an integer (of at most 19 digits)")
    if int(timestamp) < MIN_TIMESTAMP_NS:
        raise PayloadError(
            f"timestamp {timestamp} is before 1970-01-12 in nanoseconds: it looks like seconds or milliseconds. "
            "Fix: send nanoseconds since the Unix epoch"
        )
    if int(timestamp) > INFLUX_MAX_NS:
        raise PayloadError(f"timestamp {timestamp} is beyond the year 2262, the last InfluxDB can store")
    return series_parts[0], tags


def _simple_tags(tags: str) -> list[tuple[str, str]]:
    """``,k=v,k2=v2`` as pairs, for a tag section the fast regular expression accepted."""
    if not tags:
        return []
    if "\\" not in tags:
        return [(key, value) for key, _, value in (item.partition("=") for item in tags[1:].split(","))]
    return [_check_key_value(item, "tag") for item in _split(tags[1:], ",", quotes=False)]


def _check_series(
    measurement: str, tags: list[tuple[str, str]], allowed: Collection[str] | None, expected: tuple[str, ...] | None
) -> None:
    """The measurement is one the config allows; the identity tags are the topic's, once each."""
    if allowed is not None and measurement not in allowed:
        raise PayloadError(
            f"measurement {measurement[:60]!r} is not one this bridge passes line protocol to "
            f"({', '.join(sorted(allowed))}). Fix: add it to ingest.line_protocol_measurements"
        )
    if expected is None:
        return
    values = dict(tags)
    if len(values) != len(tags):
        raise PayloadError("a tag key appears twice in one point")
    for key, wanted in zip(IDENTITY_TAGS, expected, strict=True):
        value = values.get(key)
        if value is None:
            raise PayloadError(f"tag {key!r} is missing; every point names its machine. Fix: add {key}={wanted}")
        if value != escape_identifier(wanted, key):
            raise PayloadError(
                f"identity does not match the topic: {key} is {value[:60]!r} in the point but {wanted[:60]!r} "
                "in the topic. Fix: publish each machine on its own topic"
            )


def check_line_protocol(
    payload: bytes, *, allowed: Collection[str] | None = None, expected: tuple[str, ...] | None = None
) -> list[str]:
    """The non-empty, non-comment lines of ``payload``, each checked; ``PayloadError`` names the line.

    ``allowed``: the measurements points may go to; ``expected``: site, area, line and machine of
    the topic, which each point's tags must name (None: not checked).
    """
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
        try:
            simple = _SIMPLE_LINE.fullmatch(line) if len(line) <= MAX_IDENTIFIER_CHARS else None
            if simple is not None and MIN_TIMESTAMP_NS <= int(simple["time"]) <= INFLUX_MAX_NS:
                if allowed is not None or expected is not None:
                    _check_series(simple["measurement"], _simple_tags(simple["tags"]), allowed, expected)
            else:
                _check_series(*_check_line(line), allowed, expected)
        except PayloadError as exc:
            raise PayloadError(f"line protocol, line {number}: {exc}") from None
        lines.append(line)
    if not lines:
        raise PayloadError("payload is empty: neither JSON (starting with '{') nor a line-protocol point")
    return lines
