"""The one rule for names that become InfluxDB identifiers: measurements, tag keys, tag values, field keys.

Line protocol can escape a comma, an equals sign and a space in a name, but nothing else: a
backslash is read differently by InfluxDB 1.x (kept as written, so ``a\\b`` is stored with two)
and 2.x (an escape), and one at the end of a name escapes the separator after it; a line break
ends the point and starts a new one (a tag named ``flow\\nalerts …`` writes a point of its own
choosing into another measurement), a carriage return or NUL is taken apart
differently by different readers, a name starting with ``#`` turns the point into a comment, and
an empty name is a syntax error that makes InfluxDB refuse the whole batch around it. So every
path that writes line protocol (the agent's encoder, the bridge's JSON fast and careful paths,
line-protocol pass-through, alert events and scores) refuses such a name with the reason instead
of trying to escape it, and config keys that end up as names use ``TOPIC_WORD_PATTERN``.

Refused: the empty name, a name over ``MAX_IDENTIFIER_CHARS``, a leading ``#``, a backslash, control
characters (U+0000 to U+001F and U+007F) and lone surrogates (not encodable as UTF-8).
"""

from __future__ import annotations

import re

from edge_agent.core.errors import PayloadError

__all__ = [
    "MAX_IDENTIFIER_CHARS",
    "TOPIC_WORD_PATTERN",
    "check_identifier",
    "escape_identifier",
    "identifier_problem",
    "is_identifier",
]

MAX_IDENTIFIER_CHARS = 1024
"""Far beyond any real tag or machine name, far below InfluxDB's 64 KiB series-key limit."""

TOPIC_WORD_PATTERN = r"^[^/+#\\\s\x00-\x1f\x7f]{1,256}$"
"""A config value that becomes one MQTT topic level and one InfluxDB tag value (site, area, line)."""

_IDENTIFIER = re.compile(r"[^#\\\x00-\x1f\x7f\ud800-\udfff][^\\\x00-\x1f\x7f\ud800-\udfff]*")


def is_identifier(text: str) -> bool:
    """True when ``text`` can be written as a measurement, tag key, tag value or field key."""
    return len(text) <= MAX_IDENTIFIER_CHARS and _IDENTIFIER.fullmatch(text) is not None


def identifier_problem(text: str) -> str | None:  # noqa: PLR0911 - one reason per rule
    """Why ``text`` cannot be an identifier (None when it can): the words for a dead letter's reason."""
    if is_identifier(text):
        return None
    if not text:
        return "is empty"
    if len(text) > MAX_IDENTIFIER_CHARS:
        return f"is {len(text)} characters long, over the {MAX_IDENTIFIER_CHARS}-character limit"
    if text.startswith("#"):
        return "starts with '#' (line protocol would read the point as a comment)"
    if "\\" in text:
        return "holds a backslash, which InfluxDB 1.x and 2.x read differently in names"
    bad = next(char for char in text if ord(char) < 0x20 or ord(char) == 0x7F or 0xD800 <= ord(char) <= 0xDFFF)
    if 0xD800 <= ord(bad) <= 0xDFFF:
        return f"holds a lone surrogate (U+{ord(bad):04X}), which is not valid UTF-8"
    return f"holds the control character U+{ord(bad):04X}, which line protocol cannot escape"


def check_identifier(text: str, what: str) -> str:
    """``text`` unchanged if it is a valid identifier; else ``PayloadError`` naming ``what`` and why."""
    problem = identifier_problem(text)
    if problem is not None:
        raise PayloadError(f"{what} {text[:60]!r} {problem}")
    return text


def escape_identifier(text: str, what: str = "name") -> str:
    """``text`` escaped for line protocol (comma, equals, space); ``PayloadError`` if it cannot be."""
    check_identifier(text, what)
    return text.replace(",", "\\,").replace("=", "\\=").replace(" ", "\\ ")
