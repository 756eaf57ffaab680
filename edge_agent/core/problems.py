"""Readable logs under a stream of bad input: one line per kind of problem per interval.

A publisher with a bug sends the same broken payload hundreds of times a second; a flood of idle
sockets makes every accept fail. Logging each one would bury everything else, logging only the
first would hide that it is still going on. So a kind of problem is logged the first time it is
seen and then at most once per interval, with the number of similar ones since the previous line;
every single one is counted by the caller. Used by the ingest bridge and the status page.
"""

from __future__ import annotations

import re
import time
from dataclasses import dataclass

__all__ = ["ProblemLog", "problem_kind"]

_MAX_KINDS = 200
OTHER_KINDS = "(other kinds of problem)"


def problem_kind(message: str) -> str:
    """A payload error's message without its particulars (indices, numbers, quoted values)."""
    kind = re.sub(r"'[^']*'|\"[^\"]*\"", "…", message)
    kind = re.sub(r"\d+", "N", kind)
    return kind[:120]


@dataclass(slots=True)
class _Seen:
    logged_at: float
    since: int = 0  # occurrences after the last line


class ProblemLog:
    """Decides when a kind of problem gets a log line: first time, then at most once per ``interval`` s.

    At most 200 kinds are tracked (memory stays bounded whatever arrives); beyond that they share one.
    """

    def __init__(self, interval: float = 60.0) -> None:
        self.interval = interval
        self._seen: dict[str, _Seen] = {}

    def due(self, kind: str) -> int | None:
        """None: only count this one. Else log now; the value is how many were not logged since the last line."""
        now = time.monotonic()
        if kind not in self._seen and len(self._seen) >= _MAX_KINDS:
            kind = OTHER_KINDS
        seen = self._seen.get(kind)
        if seen is None:
            self._seen[kind] = _Seen(now)
            return 0
        if now - seen.logged_at >= self.interval:
            skipped, seen.logged_at, seen.since = seen.since, now, 0
            return skipped
        seen.since += 1
        return None
