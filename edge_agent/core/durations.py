"""Human durations in config ("500ms", "2s", "5m", "1h30m", "7d") parsed to float seconds.

Every duration is finite and at most ``MAX_DURATION``: ``nan`` compares false with every bound, so
an ``interval: nan`` passed each range check and the machine was then never polled; ``inf`` or
``1e308`` overflow the event loop's timers. The sign is kept, so each field's own check can say
what a negative value would have meant there.
"""

from __future__ import annotations

import math
import re
from typing import Annotated

from pydantic import BeforeValidator, WithJsonSchema

_UNITS = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0, "d": 86400.0}
_PART = re.compile(r"(\d+(?:\.\d+)?)(ms|s|m|h|d)")
_NUMBER = re.compile(r"(?:\d+(?:\.\d*)?|\.\d+)(?:[eE][+-]?\d+)?")

MAX_DURATION = 3650 * 86400.0
"""Ten years: longer than any setting needs, far below what the event loop's timers overflow at."""

_FORMS = "; write e.g. '500ms', '2s', '5m', '1h30m', '7d' or a number of seconds"


def parse_duration(raw: object) -> float:
    """Parse a duration; a bare number means seconds. Raises ValueError with the accepted forms."""
    if isinstance(raw, bool) or not isinstance(raw, int | float | str):
        raise ValueError(f"expected a duration{_FORMS}")  # noqa: TRY004 - pydantic reports ValueError
    seconds = _seconds(raw)
    if not math.isfinite(seconds) or abs(seconds) > MAX_DURATION:
        raise ValueError(f"a duration must be finite and at most 10 years (3650d){_FORMS}")
    return seconds


def _seconds(raw: int | float | str) -> float:
    if isinstance(raw, int | float):
        try:
            return float(raw)
        except OverflowError:  # an integer with hundreds of digits
            return math.inf
    text = raw.strip().replace(" ", "")
    sign = -1.0 if text[:1] == "-" else 1.0
    text = text[1:] if text[:1] in ("+", "-") else text
    if _NUMBER.fullmatch(text):  # not float(): it also takes 'nan', 'inf' and '1_0'
        return sign * float(text)
    position = 0
    total = 0.0
    for match in _PART.finditer(text):
        if match.start() != position:
            break
        total += float(match.group(1)) * _UNITS[match.group(2)]
        position = match.end()
    if position != len(text) or not text:
        raise ValueError(f"this is not a duration{_FORMS}")
    return sign * total


DURATION_PATTERN = r"^\s*-?\s*(\d+(\.\d+)?\s*(ms|s|m|h|d)?\s*)+$"

Duration = Annotated[
    float,
    BeforeValidator(parse_duration),
    WithJsonSchema(
        {
            "anyOf": [{"type": "number"}, {"type": "string", "pattern": DURATION_PATTERN}],
            "description": "A duration: '500ms', '2s', '5m', '1h30m', '7d', or a number of seconds.",
        }
    ),
]
"""A config field holding seconds, written by a person as '500ms', '2s', ..."""


def format_duration(seconds: float) -> str:
    """Seconds as a person writes them in the config: ``4.4s``, ``170s``, ``15m``, ``1h30m``, ``1d``."""
    if seconds < 600 or seconds != int(seconds):
        return f"{seconds:g}s"
    text = ""
    rest = int(seconds)
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60), ("s", 1)):
        if rest >= size:
            text += f"{rest // size}{unit}"
            rest %= size
    return text
