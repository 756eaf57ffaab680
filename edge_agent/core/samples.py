"""The values that flow through the agent: one ``Sample`` per tag reading, a ``Batch`` per poll.

These types are the seam between connectors (which make them) and sinks (which ship them),
so they carry everything a sink needs and nothing protocol-specific.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from enum import StrEnum

Value = float | int | bool | str


class Quality(StrEnum):
    """OPC UA's three-way quality, used for every protocol so dashboards can treat all alike."""

    GOOD = "good"
    UNCERTAIN = "uncertain"
    BAD = "bad"


def now_ns() -> int:
    """Wall-clock UTC time in integer nanoseconds since the Unix epoch (InfluxDB's native unit)."""
    return time.time_ns()


@dataclass(frozen=True, slots=True)
class Sample:
    """One reading of one tag.

    ``timestamp_ns`` is UTC nanoseconds since the epoch: the source timestamp where the protocol
    gives one (OPC UA), else the moment the agent received the answer. ``value`` is ``None`` only
    when the quality is bad and no value could be read; ``reason`` then says why.
    """

    tag: str
    value: Value | None
    timestamp_ns: int
    quality: Quality = Quality.GOOD
    reason: str | None = None
    unit: str | None = None

    @classmethod
    def bad(cls, tag: str, reason: str, timestamp_ns: int, unit: str | None = None) -> Sample:
        """A reading that failed: no value, bad quality and the reason a person can act on."""
        return cls(tag, None, timestamp_ns, Quality.BAD, reason, unit)


@dataclass(frozen=True, slots=True)
class Batch:
    """All samples of one poll (or one subscription flush) of one machine."""

    machine: str
    samples: tuple[Sample, ...]
    polled_at_ns: int = field(default_factory=now_ns)

    @property
    def good_count(self) -> int:
        """How many samples carry a usable value."""
        return sum(1 for s in self.samples if s.quality is Quality.GOOD)
