"""The bounded queue of subscription changes waiting for the next read. Pure; no sockets."""

from __future__ import annotations

from collections import deque

from edge_agent.core.samples import Sample


class ChangeQueue:
    """Samples in arrival order, at most ``limit`` of them: when full, the oldest go and are counted."""

    def __init__(self, limit: int) -> None:
        if limit < 1:
            raise ValueError("a change queue holds at least one sample")
        self._samples: deque[Sample] = deque()
        self.limit = limit
        self.dropped = 0
        """Samples dropped since the queue was made (never reset, so metrics can take differences)."""

    def __len__(self) -> int:
        return len(self._samples)

    def put(self, sample: Sample) -> bool:
        """Queue ``sample``; True when that dropped the oldest one."""
        dropped = len(self._samples) >= self.limit
        if dropped:
            self._samples.popleft()
            self.dropped += 1
        self._samples.append(sample)
        return dropped

    def take_all(self) -> list[Sample]:
        """Every queued sample, oldest first; the queue is empty afterwards."""
        samples = list(self._samples)
        self._samples.clear()
        return samples

    def clear(self) -> None:
        """Forget what is queued (a new subscription starts afresh); the drop count stays."""
        self._samples.clear()
