"""What each server actually served: bounded per-signal histories for tests to compare against.

A test reads a value over the wire and checks it against ``served(...)``; this is the
simulator's ground truth of the wire, recorded before the value becomes visible to clients so
a reader can never see a value that is not yet in the history.
"""

from __future__ import annotations

from collections import deque

DEFAULT_DEPTH = 2000


class ServedHistory:
    """(protocol, machine, signal) -> the last ``depth`` (timestamp_ns, value) pairs served."""

    def __init__(self, depth: int = DEFAULT_DEPTH) -> None:
        self.depth = depth
        self._series: dict[tuple[str, str, str], deque[tuple[int, float]]] = {}

    def record(self, protocol: str, machine_id: str, values: dict[str, float], timestamp_ns: int) -> None:
        """Append one update of every signal of one machine."""
        for name, value in values.items():
            key = (protocol, machine_id, name)
            series = self._series.get(key)
            if series is None:
                series = self._series[key] = deque(maxlen=self.depth)
            series.append((timestamp_ns, value))

    def get(self, protocol: str, machine_id: str, signal: str) -> list[tuple[int, float]]:
        """Oldest first; empty when nothing was served yet under that key."""
        return list(self._series.get((protocol, machine_id, signal), ()))
