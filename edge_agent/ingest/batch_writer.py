"""The bridge's InfluxDB side: write a batch of parsed messages, then ack them in arrival order.

How nothing gets lost and nothing duplicates on this side:

- A message is acked only after its points were written, so a message in flight when the bridge
  or InfluxDB dies is redelivered. Every point carries its sample timestamp and full identity
  (``edge_agent.delivery.payloads``), so a redelivered message overwrites itself in InfluxDB.
- While InfluxDB is down the write is retried with capped, jittered backoff and the messages stay
  unacked; the broker stops sending once the receive window is full, so memory stays bounded and
  the backlog waits in the broker. Retrying and isolating a refused message are the shared loop's
  (``edge_agent.delivery.influx_retry``), the same as the direct sink's.
- A message whose points InfluxDB refuses as bad data is counted, logged (once per kind of refusal
  per interval) and acked, so one bad publisher cannot block the stream.
- A malformed message is acked only once its copy on the dead-letter topic is safe.

Batches are written side by side, so each write waits for the write before it to ack first: the
acks go out in arrival order, as MQTT asks.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Sequence

from edge_agent.core.problems import ProblemLog, problem_kind
from edge_agent.delivery.influx_retry import InfluxRetryLoop
from edge_agent.delivery.influx_writer import InfluxWriter, RejectedPoints, WriteFailed
from edge_agent.ingest.stats import IngestStats, Message, Parsed
from edge_agent.ingest.subscriber import Subscriber

__all__ = ["BatchWriter"]

log = logging.getLogger(__name__)


class BatchWriter:
    """Writes batches through the shared retry/isolate loop and acks their messages; a ``WriteWatcher``.

    ``stopping`` set ends the retries: a batch not yet written is then left unacked for redelivery.
    """

    def __init__(
        self,
        writer: InfluxWriter,
        subscriber: Subscriber,
        stats: IngestStats,
        problems: ProblemLog,
        stopping: asyncio.Event,
        *,
        backoff_initial: float,
        backoff_max: float,
    ) -> None:
        self.writer = writer
        self.subscriber = subscriber
        self.stats = stats
        self.problems = problems
        self.writes = InfluxRetryLoop[Parsed](
            writer, self, backoff_initial=backoff_initial, backoff_cap=backoff_max, stopping=stopping
        )

    async def health_check(self) -> None:
        """Ping InfluxDB once at start: only reports (a dead database shows at start-up), never blocks."""
        try:
            await self.writer.ping()
        except WriteFailed as exc:
            if self.stats.influx_ok is None:  # a write may have answered the question meanwhile
                self.stats.influx_ok = False
                log.warning("ingest: %s; messages will wait in the broker until it answers", exc)
        else:
            if self.stats.influx_ok is None:
                self.stats.influx_ok = True
            log.info("ingest: InfluxDB at %s answers", self.writer.target)

    async def write_and_ack(
        self, batch: Sequence[Parsed], previous: asyncio.Task[bool] | None = None, *, final: bool = False
    ) -> bool:
        """Write the batch (retrying while InfluxDB is unavailable), then ack its messages in order.

        ``previous`` is the write of the batch before this one: its acks go out first, and if it
        left its messages unacked (stopping while InfluxDB is down) this batch leaves them too.
        ``final``: one attempt only. True once acked.
        """
        outcome = await self.writes.write(batch, final=final)
        for refusal in outcome.refused:
            self._count_rejected(refusal.part.message, refusal.error)
        if previous is not None and not await previous:
            return False
        if not outcome.stored:
            return False  # stopping while InfluxDB is down: leave the messages unacked for redelivery
        dead_letters = [parsed.dead_letter for parsed in batch if parsed.dead_letter is not None]
        if dead_letters:
            # A malformed message is acked only once its copy on the dead-letter topic is safe.
            await asyncio.gather(*dead_letters)
        self.subscriber.ack([parsed.message for parsed in batch])
        return True

    def write_failed(self, error: WriteFailed) -> None:
        """``WriteWatcher``: count the failure; the first of an outage says the messages wait in the broker."""
        self.stats.write_errors += 1
        if not error.retryable:
            return
        if self.stats.influx_ok is not False:
            log.warning("ingest: %s; retrying with backoff, messages stay unacked in the broker", error)
        self.stats.influx_ok = False

    def written(self, points: int, failed_attempts: int) -> None:
        """``WriteWatcher``: count the write; the first after an outage says InfluxDB is back."""
        if self.stats.influx_ok is False:
            log.info(
                "ingest: InfluxDB at %s accepts writes again after %d failed attempt(s)",
                self.writer.target,
                failed_attempts,
            )
        self.stats.influx_ok = True
        self.stats.writes += 1
        self.stats.written_points += points

    def _count_rejected(self, message: Message, exc: RejectedPoints) -> None:
        self.stats.rejected += 1
        kind = "rejected: " + problem_kind(exc.detail or str(exc))
        skipped = self.problems.due(kind)
        if skipped is not None:
            log.error(
                "ingest: InfluxDB refused points of a message on %s, which are lost: %s%s (one line per kind of "
                "refusal per %.0f s; each one at DEBUG)",
                message.topic,
                exc,
                f"; {skipped} more refused for this reason since the last line" if skipped else "",
                self.problems.interval,
            )
        log.debug("ingest: refused message on %s: %s", message.topic, exc)
