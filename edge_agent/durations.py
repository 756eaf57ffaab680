"""Human durations in config ("500ms", "2s", "5m", "1h30m", "7d") parsed to float seconds."""

from __future__ import annotations

import re
from typing import Annotated

from pydantic import BeforeValidator, WithJsonSchema

_UNITS = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0, "d": 86400.0}
_PART = re.compile(r"(\d+(?:\.\d+)?)(ms|s|m|h|d)")


def parse_duration(raw: object) -> float:
    """Parse a duration; a bare number means seconds. Raises ValueError with the accepted forms."""
    if isinstance(raw, bool):
        raise ValueError("expected a duration such as '500ms', '2s', '5m', '1h' or a number of seconds")  # noqa: TRY004 - pydantic reports ValueError
    if isinstance(raw, int | float):
        return float(raw)
    if not isinstance(raw, str):
        raise ValueError("expected a duration such as '500ms', '2s', '5m', '1h' or a number of seconds")  # noqa: TRY004 - pydantic reports ValueError
    text = raw.strip().replace(" ", "")
    sign = -1.0 if text.startswith("-") else 1.0
    text = text.lstrip("+-")
    try:
        return sign * float(text)
    except ValueError:
        pass
    position = 0
    total = 0.0
    for match in _PART.finditer(text):
        if match.start() != position:
            break
        total += float(match.group(1)) * _UNITS[match.group(2)]
        position = match.end()
    if position != len(text) or not text:
        raise ValueError(
            f"{raw!r} is not a duration; write e.g. '500ms', '2s', '5m', '1h30m', '7d' or a number of seconds"
        )
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
