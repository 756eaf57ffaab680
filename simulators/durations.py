"""Durations as people write them ("500ms", "2s", "5m", "1h30m", "7d"), parsed to seconds.

The agent has its own parser; the simulators keep theirs so they never import the agent.
"""

from __future__ import annotations

import math
import re

_UNITS = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0, "d": 86400.0}
_PART = re.compile(r"(\d+(?:\.\d+)?)(ms|s|m|h|d)")
_FORMS = "write e.g. '500ms', '2s', '5m', '1h30m', '7d' or a number of seconds"


def parse_duration(raw: object) -> float:
    """Seconds from a duration text or number; raises ValueError saying which forms work.

    Negative values are returned as such ("-5m" is -300.0) so callers can reject them with
    their own context.
    """
    if isinstance(raw, bool) or not isinstance(raw, int | float | str):
        raise ValueError(f"{raw!r} is not a duration; {_FORMS}")  # noqa: TRY004 - callers catch one error type
    if isinstance(raw, int | float):
        if not math.isfinite(raw):
            raise ValueError(f"{raw!r} is not a duration; {_FORMS}")
        return float(raw)
    text = raw.strip().replace(" ", "")
    sign = -1.0 if text.startswith("-") else 1.0
    text = text.lstrip("+-")
    try:
        return sign * float(text)
    except ValueError:
        pass
    position, total = 0, 0.0
    for match in _PART.finditer(text):
        if match.start() != position:
            break
        total += float(match.group(1)) * _UNITS[match.group(2)]
        position = match.end()
    if not text or position != len(text):
        raise ValueError(f"{raw!r} is not a duration; {_FORMS}")
    return sign * total
