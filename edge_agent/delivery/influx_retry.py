"""The one retry/isolate loop every InfluxDB write goes through: the direct sink's and the ingest bridge's.

Both paths hold data that must reach InfluxDB once in effect, and both meet the same two kinds of
failure (``edge_agent.delivery.influx_writer``):

- ``WriteFailed`` (InfluxDB away, overloaded, refusing the credentials): the same bytes may succeed
  later, so they are sent again after a capped, jittered ``Backoff``, until they are stored or the
  owner stops (the bridge then leaves its messages unacked, to be redelivered).
- ``RejectedPoints`` (the data itself is refused): the same bytes can never succeed, and holding
  them would block everything behind. The request is split into its parts (the bridge's MQTT
  messages, the sink's outbox entries) and each is written alone, so the bad part is found and
  handed back to the owner while the others are stored. Writing again the points InfluxDB had
  accepted is harmless: same identity, same values, they overwrite themselves.

What to log, count and replay stays with the owner, which hears of every attempt through a
``WriteWatcher``: the two paths say different things to their operators.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Generic, Protocol, TypeVar

from edge_agent.core.backoff import Backoff
from edge_agent.delivery.influx_writer import InfluxWriter, RejectedPoints, WriteFailed

__all__ = ["InfluxRetryLoop", "Refusal", "WriteOutcome", "WritePart", "WriteWatcher"]


class WritePart(Protocol):
    """What is stored or refused as a whole: its line protocol (lines joined by newlines) and its point count."""

    @property
    def body(self) -> bytes: ...

    @property
    def points(self) -> int: ...


PartT = TypeVar("PartT", bound=WritePart)


class WriteWatcher(Protocol):
    """The owner's ears: it logs and counts; the loop only decides when to send what."""

    def write_failed(self, error: WriteFailed) -> None:
        """A request failed; ``error.retryable`` is False when InfluxDB refused the data itself."""

    def written(self, points: int, failed_attempts: int) -> None:
        """A request stored ``points`` after ``failed_attempts`` retryable failures."""


@dataclass(frozen=True, slots=True)
class Refusal(Generic[PartT]):
    """A part whose points InfluxDB refused: they are lost, and ``error`` says why."""

    part: PartT
    error: RejectedPoints


@dataclass(slots=True)
class WriteOutcome(Generic[PartT]):
    """``stored`` False: the owner stopped before InfluxDB took everything (nothing may be acked).

    Otherwise every part is settled: stored, or listed in ``refused``.
    """

    stored: bool = True
    refused: list[Refusal[PartT]] = field(default_factory=list)


class InfluxRetryLoop(Generic[PartT]):
    """Writes parts to one ``InfluxWriter``: retries what may succeed later, isolates what never will.

    ``stopping``, when given, ends the retries (a write then reports ``stored=False``); without it
    a write retries until it succeeds or its task is cancelled. Each write has its own backoff, so
    writes in flight side by side do not stretch each other's delays.
    """

    def __init__(
        self,
        writer: InfluxWriter,
        watcher: WriteWatcher,
        *,
        backoff_initial: float = 0.5,
        backoff_cap: float = 30.0,
        stopping: asyncio.Event | None = None,
    ) -> None:
        Backoff(backoff_initial, backoff_cap)  # refuse impossible bounds now, not at the first failure
        self.writer = writer
        self.watcher = watcher
        self.backoff_initial = backoff_initial
        self.backoff_cap = backoff_cap
        self._stopping = stopping

    async def write(self, parts: Sequence[PartT], *, final: bool = False) -> WriteOutcome[PartT]:
        """Store the parts' points in one request; on a refusal, part by part. ``final``: one attempt only."""
        with_points = [part for part in parts if part.points]
        outcome: WriteOutcome[PartT] = WriteOutcome()
        if not with_points:
            return outcome
        body = b"\n".join([part.body for part in with_points])  # one part: its own bytes, not a copy
        try:
            outcome.stored = await self._send(body, sum(part.points for part in with_points), final=final)
        except RejectedPoints as exc:
            if len(with_points) == 1:
                outcome.refused.append(Refusal(with_points[0], exc))
                return outcome
            for part in with_points:
                try:
                    outcome.stored = await self._send(part.body, part.points, final=final)
                except RejectedPoints as refused:
                    outcome.refused.append(Refusal(part, refused))
                    continue
                if not outcome.stored:
                    break
        return outcome

    async def _send(self, body: bytes, points: int, *, final: bool) -> bool:
        """True once written; False if stopping first. ``RejectedPoints`` propagates."""
        backoff = Backoff(self.backoff_initial, self.backoff_cap)
        while True:
            try:
                await self.writer.write(body)
            except WriteFailed as exc:
                self.watcher.write_failed(exc)
                if not exc.retryable:
                    raise
                if final or self._stopped():
                    return False
                await self._wait(backoff.next_delay())
                if self._stopped():
                    return False
                continue
            self.watcher.written(points, backoff.attempts)
            return True

    def _stopped(self) -> bool:
        return self._stopping is not None and self._stopping.is_set()

    async def _wait(self, delay: float) -> None:
        """Sleep ``delay`` seconds, or less if the owner stops meanwhile."""
        if self._stopping is None:
            await asyncio.sleep(delay)
            return
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(delay):
                await self._stopping.wait()
