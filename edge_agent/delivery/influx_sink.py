"""Direct InfluxDB sink for single-box installs: agent → outbox → InfluxDB, no broker in between.

The same durable outbox as the MQTT path (``edge_agent.delivery.outbox``) holds every batch, encoded as the
line protocol of ``edge_agent.delivery.payloads`` (the very points the ingest bridge would write), until
InfluxDB has answered the write with success. The writer and its retry/isolate loop are the ingest
bridge's own (``edge_agent.delivery.influx_writer`` and ``edge_agent.delivery.influx_retry``), so
retries, error classes and credential handling are the same on both paths:

- ``WriteFailed`` (unreachable, 5xx, 401/403, 404): nothing is removed; the write is retried with
  capped, jittered backoff, the backlog waits on disk (bounded by the outbox), polling goes on.
- ``RejectedPoints`` (400/413/422: the data itself is refused): the chunk is written entry by entry
  to find the culprit, which is counted, logged once at ERROR and removed, so one bad batch cannot
  block the stream.

Entries are written oldest first, many per request (up to ``MAX_POINTS`` points), so a backlog
drains in large batches while new batches keep being appended behind it. The replay of a backlog
(after an outage, or left by a previous run) is reported like the MQTT publisher's
(``edge_agent.delivery.replay``): a start line at the first successful write, progress at most every
10 s, an end line.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import sqlite3
from dataclasses import dataclass
from typing import Any

from edge_agent.alerts import events as event_lines
from edge_agent.core.backoff import Backoff
from edge_agent.core.errors import PayloadError
from edge_agent.core.origin import Origin
from edge_agent.core.samples import Batch
from edge_agent.delivery.config import InfluxConfig, OutboxConfig
from edge_agent.delivery.influx_retry import InfluxRetryLoop
from edge_agent.delivery.influx_writer import InfluxWriter, RejectedPoints, WriteFailed, make_writer
from edge_agent.delivery.outbox import Entry, Outbox, default_outbox_path
from edge_agent.delivery.output import url_address
from edge_agent.delivery.payloads import encode_line_protocol
from edge_agent.delivery.replay import BacklogReplay

__all__ = ["InfluxSink", "InfluxSinkStats"]

log = logging.getLogger(__name__)

READ_CHUNK = 1000  # outbox entries per read
MAX_POINTS = 5000  # points per write request
CLOSE_GRACE_S = 1.5
STORAGE_RETRY_S = 1.0  # after a failed read or delete of the outbox


@dataclass
class InfluxSinkStats:
    """``written_batches``/``written_points`` stored; ``write_errors`` failed attempts; ``rejected``
    batches InfluxDB refused as bad data (lost, logged); ``dropped`` batches the outbox could not keep.
    """

    submitted: int = 0
    written_batches: int = 0
    written_points: int = 0
    writes: int = 0
    write_errors: int = 0
    rejected: int = 0
    dropped: int = 0


class InfluxSink:
    """Writes batches through the outbox straight into InfluxDB (v1 or v2, per the influxdb section).

    A ``DeliverySink`` (``edge_agent.delivery.output``).
    """

    name = "influxdb"

    def __init__(
        self,
        config: InfluxConfig,
        site: str,
        outbox: OutboxConfig | None = None,
        *,
        writer: InfluxWriter | None = None,
        backoff: Backoff | None = None,
    ) -> None:
        outbox_config = outbox or OutboxConfig()
        self.config = config
        self.writer = writer or make_writer(config)
        self.outbox = Outbox(
            outbox_config.path or default_outbox_path(f"influxdb-{site}"),
            max_bytes=int(outbox_config.max_bytes),
            max_age=outbox_config.max_age,
            synchronous=outbox_config.synchronous,
        )
        backoff = backoff or Backoff(initial=0.5, cap=30.0)
        self.writes = InfluxRetryLoop[_EntryPart](
            self.writer, self, backoff_initial=backoff.initial, backoff_cap=backoff.cap
        )
        self.stats = InfluxSinkStats()
        self.replay = BacklogReplay(self.outbox, f"InfluxDB {self.writer.target}")
        self._written_once = False
        self._wake = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self._down = False
        self._rejected_logged = False
        self._storage_error_logged = False

    @property
    def influx_ok(self) -> bool:
        """False while writes fail."""
        return not self._down

    @property
    def target(self) -> str:
        """The InfluxDB server, without credentials (``DeliverySink``)."""
        return url_address(self.config.url)

    @property
    def connected(self) -> None:
        """Writes are single requests, not a lasting link: nothing to tell (``DeliverySink``)."""
        return None

    async def start(self) -> None:
        """Open the outbox and start the writer task; a down InfluxDB only delays the writes."""
        await self.outbox.open()
        self._task = asyncio.create_task(self._drain(), name="influxdb:writer")
        self._wake.set()
        log.info("InfluxDB sink: writing to %s through the outbox %s", self.writer.target, self.outbox.path)

    async def submit(self, batch: Batch, origin: Origin) -> None:
        """Store one batch (as line protocol) in the outbox; the writer task sends it in turn."""
        self.stats.submitted += 1
        try:
            seq = await self.outbox.append(origin.machine, encode_line_protocol(batch, origin), len(batch.samples))
        except RuntimeError as exc:  # outbox closed: shutting down
            log.debug("InfluxDB sink: batch of %s not stored: %s", origin.machine, exc)
            seq = None
        if seq is None:
            self.stats.dropped += 1
        self._wake.set()

    async def submit_event(self, origin: Origin, kind: str, event: dict[str, Any]) -> None:
        """Store an alert event (``kind="alerts"``) or an anomaly score (``"scores"``) as its InfluxDB point.

        The same points the ingest bridge writes from ``.../alerts`` and ``.../scores``
        (``edge_agent.alerts.events``: measurements ``alerts`` and ``anomaly_score``), through the
        same outbox as the telemetry, so they survive an InfluxDB outage too. An event the
        conversion refuses is a bug of the agent: logged, counted in ``rejected``, not stored.
        """
        convert = event_lines.alert_event_to_line if kind == "alerts" else event_lines.score_to_line
        try:
            line = convert(event)
        except PayloadError as exc:
            self.stats.rejected += 1
            log.error(  # noqa: TRY400 - the message says it all; no traceback for a refused event
                "InfluxDB sink: %s of %s cannot be written as a point (%s); not stored", kind, origin.machine, exc
            )
            return
        try:
            seq = await self.outbox.append(origin.machine, line.encode(), 0)
        except RuntimeError as exc:  # outbox closed: shutting down
            log.debug("InfluxDB sink: %s of %s not stored: %s", kind, origin.machine, exc)
            seq = None
        if seq is None:
            self.stats.dropped += 1
        self._wake.set()

    def machine_state_changed(self, origin: Origin, state: str, reason: str | None) -> None:
        """Machine up/down is not stored in InfluxDB (the bad-quality samples already say it)."""

    async def close(self) -> None:
        """Give the writer a moment to finish what is due, then stop; the rest waits in the outbox."""
        task, self._task = self._task, None
        if task is None:
            return
        try:
            if not self._down and self.outbox.stats.entries:
                with contextlib.suppress(TimeoutError):
                    async with asyncio.timeout(CLOSE_GRACE_S):
                        while self.outbox.stats.entries and not self._down and not task.done():
                            self._wake.set()
                            await asyncio.sleep(0.05)  # bounded by the timeout; the writer task owns the event
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)
            self.replay.interrupt("the agent is stopping")
            await self.writer.close()
        finally:
            task.cancel()
            await self.outbox.close()  # also when the caller's timeout cancels us: let the file go

    async def _drain(self) -> None:
        """Write the outbox, oldest first, until it is empty; then wait for the next batch."""
        while True:
            await self._wake.wait()
            self._wake.clear()
            while True:
                try:
                    entries = await self.outbox.read_after(0, READ_CHUNK, pin=True)
                except sqlite3.Error as exc:  # the disk failed under us: say so once, keep trying
                    self._report_storage_error(exc)
                    await asyncio.sleep(STORAGE_RETRY_S)
                    continue
                if not entries:
                    break
                chunk: list[Entry] = []
                points = 0
                for entry in entries:
                    count = entry.payload.count(b"\n") + 1 if entry.payload else 0
                    if chunk and points + count > MAX_POINTS:
                        break
                    chunk.append(entry)
                    points += count
                await self._write_chunk(chunk)

    async def _write_chunk(self, chunk: list[Entry]) -> None:
        outcome = await self.writes.write([_EntryPart.of(entry) for entry in chunk])
        self.stats.written_batches += len(chunk) - len(outcome.refused)
        for refusal in outcome.refused:
            self._count_rejected(refusal.part.entry, refusal.error)
        while True:
            try:
                await self.outbox.remove(entry.seq for entry in chunk)
            except sqlite3.Error as exc:
                self._report_storage_error(exc)
                await asyncio.sleep(STORAGE_RETRY_S)
                continue
            self._storage_error_logged = False
            self.replay.delivered(entry.seq for entry in chunk)
            self.replay.check()
            return

    def _report_storage_error(self, exc: sqlite3.Error) -> None:
        if not self._storage_error_logged:
            self._storage_error_logged = True
            log.error(
                "InfluxDB sink: the outbox %s cannot be read or updated (%s); retrying every %.0f s. "
                "Fix: check the disk",
                self.outbox.path,
                exc,
                STORAGE_RETRY_S,
            )

    def write_failed(self, error: WriteFailed) -> None:
        """``WriteWatcher``: count the failure; a retryable one interrupts the replay and says InfluxDB is down."""
        self.stats.write_errors += 1
        if not error.retryable:
            return
        self.replay.interrupt(f"InfluxDB stopped accepting writes ({error})")
        if not self._down:
            self._down = True
            log.warning(
                "InfluxDB sink: %s; retrying with backoff, batches wait in the outbox (%d now)",
                error,
                self.outbox.stats.entries,
            )

    def written(self, points: int, failed_attempts: int) -> None:
        """``WriteWatcher``: count the write; the first one, or the first after an outage, starts a replay."""
        self.stats.writes += 1
        self.stats.written_points += points
        first_or_back = self._down or not self._written_once
        if self._down:
            self._down = False
            log.info("InfluxDB sink: %s accepts writes again; sending the backlog", self.writer.target)
        if first_or_back:  # a backlog now waiting is an outage's (or a previous run's): report its replay
            self._written_once = True
            self.replay.begin()  # the chunk just written is still in the outbox, so it counts

    def _count_rejected(self, entry: Entry, exc: RejectedPoints) -> None:
        self.stats.rejected += 1
        if not self._rejected_logged:
            self._rejected_logged = True
            log.error(
                "InfluxDB sink: InfluxDB refused the points of a batch of %s, which are lost: %s "
                "(further refusals are only counted)",
                entry.topic,
                exc,
            )


@dataclass(frozen=True, slots=True)
class _EntryPart:
    """An outbox entry as a ``WritePart``: refused as a whole when InfluxDB rejects one of its points."""

    entry: Entry
    body: bytes
    points: int

    @classmethod
    def of(cls, entry: Entry) -> _EntryPart:
        lines = [line for line in entry.payload.split(b"\n") if line]
        return cls(entry, b"\n".join(lines), len(lines))
