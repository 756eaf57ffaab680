"""The ingest bridge: telemetry from MQTT into InfluxDB, acknowledged only once it is stored.

How nothing gets lost and nothing duplicates, in three parts:

- ``edge_agent.ingest.subscriber``: a persistent MQTT 5 session with QoS 1 subscriptions and manual
  acks, so the broker keeps every message until the bridge has stored it.
- ``edge_agent.ingest.batch_writer``: a batch is written (retried while InfluxDB is down, a refused
  message isolated), then its messages are acked, in arrival order.
- ``edge_agent.ingest.dead_letter_sender``: a malformed payload is published (QoS 1) to a
  dead-letter topic with the reason and acked once the broker acknowledged that copy.

This module batches what arrives. Besides telemetry the bridge reads alert events (``…/alerts``)
and anomaly scores (``…/scores``) and writes them as the ``alerts`` and ``anomaly_score``
measurements (``edge_agent.alerts.events``).

The bridge announces a Receive Maximum, the number of unacked messages the broker may send.
Knowing that window, it flushes as soon as it is full instead of waiting for the flush interval
(with MQTT 3.1.1 the broker's own in-flight limit, 20 in Mosquitto, would throttle it silently).
Brokers that cap the window lower still work: a short quiet gap also flushes.

Up to two batches are written at once (``writes_in_flight``): the consumer parses the next batch
while InfluxDB stores the current one, and each write acks its messages only after the write
before it has acked, so the order of acks is that of arrival. A write that keeps failing holds back
every ack behind it; the receive window then fills and the broker keeps the rest. Every bridge
needs its own ``ingest.client_id``: two clients with one id take the session from each other in
turn (the bridge detects this and says so).

Every task of the bridge is watched: a message that cannot be parsed is dead-lettered with its
reason (``edge_agent.ingest.parsing``), but a task that dies (a bug) stops the bridge at once with
``BridgeTaskDied``, which ``run_ingest`` logs at CRITICAL with the traceback before exiting with
status 70, so the service manager restarts the bridge: a silent zombie that reads nothing more
would be worse. Unacked messages are redelivered to the next run.

Fault injection, for tests of that path only: with the environment variable
``EDGE_AGENT_INGEST_FAULT=parse`` the parse task raises on the first message it reads.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import time
from collections import deque
from collections.abc import Coroutine
from typing import Any, Protocol, TypeVar

from edge_agent.core.errors import ConfigError
from edge_agent.core.problems import ProblemLog
from edge_agent.delivery.config import InfluxConfig, MqttConfig
from edge_agent.delivery.influx_writer import InfluxWriter, make_writer
from edge_agent.ingest.batch_writer import BatchWriter
from edge_agent.ingest.config import IngestConfig
from edge_agent.ingest.dead_letter_sender import DeadLetterSender
from edge_agent.ingest.deadletter import dead_letter_prefix as _dead_letter_prefix
from edge_agent.ingest.parsing import TOPIC_KINDS, ParsedPayload, ParseRules, parse_many
from edge_agent.ingest.stats import IngestStats, Message, Parsed
from edge_agent.ingest.subscriber import MAX_RECEIVE_MAXIMUM, Subscriber, subscriptions, telemetry_subscription

__all__ = ["EXIT_TASK_DIED", "BridgeTaskDied", "IngestBridge", "IngestSettings", "run_ingest"]

log = logging.getLogger(__name__)

_FINAL_FLUSH_TIMEOUT = 2.0
FAULT_ENV = "EDGE_AGENT_INGEST_FAULT"
EXIT_TASK_DIED = 70  # EX_SOFTWARE: an internal error; systemd's Restart=on-failure restarts the bridge
_T = TypeVar("_T")

_Chunk = tuple[list[Message], list[ParsedPayload]]  # messages that arrived together, parsed
_CHUNK = 128  # messages parsed together at most


class BridgeTaskDied(RuntimeError):
    """A task of the bridge raised: a bug. The bridge stops; its cause is the task's exception."""


class IngestSettings(Protocol):
    """The config sections ``run_ingest`` reads (the agent's whole config has them)."""

    @property
    def mqtt(self) -> MqttConfig | None: ...

    @property
    def influxdb(self) -> InfluxConfig | None: ...

    @property
    def ingest(self) -> IngestConfig: ...


def _reap(flushes: deque[asyncio.Task[bool]]) -> None:
    """Drop the finished writes at the head of ``flushes``; an exception in one (a bug) is raised."""
    while flushes and flushes[0].done():
        flushes.popleft().result()


class IngestBridge:
    """Subscribes to telemetry, writes it to InfluxDB in batches, acks each message after its write.

    ``await bridge.run(stop)`` runs until ``stop`` is set (then flushes what it holds if InfluxDB
    answers within 2 s, and disconnects) or until cancelled (then disconnects at once; unacked
    messages are redelivered to the next run). ``await wait_ready()`` returns once the subscription is
    active. ``stats`` counts what happened.

    ``backoff_initial``/``backoff_max`` bound the retry delay while InfluxDB is down; ``linger`` is
    the quiet gap after which a partial batch is written without waiting for ``flush_interval``;
    ``writes_in_flight`` the number of batches written at once (the next batch is parsed meanwhile).
    ``dead_letter_prefix`` is where malformed payloads go (default ``{topic_prefix}/_deadletter``, see
    ``edge_agent.ingest.deadletter``); ``problem_log_interval`` the seconds between two log lines
    about the same kind of problem.
    """

    def __init__(
        self,
        mqtt_config: MqttConfig,
        ingest: IngestConfig,
        writer: InfluxWriter,
        *,
        backoff_initial: float = 0.5,
        backoff_max: float = 30.0,
        linger: float = 0.05,
        writes_in_flight: int = 2,
        dead_letter_prefix: str | None = None,
        problem_log_interval: float = 60.0,
    ) -> None:
        self.mqtt_config = mqtt_config
        self.ingest = ingest
        self.writer = writer
        self.linger = min(linger, ingest.flush_interval)
        self.writes_in_flight = max(1, writes_in_flight)
        self._unacked_in_flight = 0  # messages in batches being written
        self.receive_maximum = max(1, min(ingest.batch_size, MAX_RECEIVE_MAXIMUM))
        self.topic = telemetry_subscription(mqtt_config.topic_prefix, ingest.share_group)
        self.topics = subscriptions(mqtt_config.topic_prefix, ingest.share_group)
        try:
            self.dead_letter_prefix = _dead_letter_prefix(mqtt_config.topic_prefix, dead_letter_prefix)
        except ValueError as exc:
            raise ConfigError("configuration", [f"ingest: {exc}"]) from exc
        self.stats = IngestStats()
        self.rules = ParseRules(mqtt_config.topic_prefix, frozenset(ingest.line_protocol_measurements))
        problems = ProblemLog(problem_log_interval)
        self._inbox: asyncio.Queue[Message | None] = asyncio.Queue()  # bounded by the subscriber's accounting
        self._stopping = asyncio.Event()
        self._failed = asyncio.Event()
        self._failure: BridgeTaskDied | None = None
        self._inject_fault = os.environ.get(FAULT_ENV) == "parse"
        self.subscriber = Subscriber(
            mqtt_config,
            ingest,
            self.stats,
            self._inbox,
            self._stopping,
            receive_maximum=self.receive_maximum,
            dead_letter_prefix=self.dead_letter_prefix,
            on_reconnected=self._reconnected,
            on_published=self._published,
        )
        self.dead_letters = DeadLetterSender(
            self.subscriber,
            self.stats,
            problems,
            topic_prefix=mqtt_config.topic_prefix,
            dead_letter_prefix=self.dead_letter_prefix,
            client_id=ingest.client_id,
        )
        self.batches = BatchWriter(
            writer,
            self.subscriber,
            self.stats,
            problems,
            self._stopping,
            backoff_initial=backoff_initial,
            backoff_max=backoff_max,
        )

    async def wait_ready(self) -> None:
        """Return once the broker confirmed the subscription (wrap in ``asyncio.timeout``)."""
        await self.subscriber.wait_ready()

    def _spawn(self, coroutine: Coroutine[Any, Any, _T], name: str) -> asyncio.Task[_T]:
        """A named task whose death (an exception, not a cancellation) stops the bridge."""
        task = asyncio.create_task(coroutine, name=name)
        task.add_done_callback(self._watch)
        return task

    def _watch(self, task: asyncio.Task[Any]) -> None:
        if task.cancelled() or task.exception() is None or self._failure is not None:
            return
        error = task.exception()
        self._failure = BridgeTaskDied(f"ingest task {task.get_name()!r} died: {type(error).__name__}: {error}")
        self._failure.__cause__ = error
        self._failed.set()

    async def run(self, stop: asyncio.Event) -> None:
        """Bridge until ``stop`` is set or the task is cancelled; ``BridgeTaskDied`` if one of its tasks dies."""
        self.subscriber.start()
        # The health check only reports (a dead database shows at start-up); it must not delay or
        # block the start, so it runs beside the consumer.
        health = self._spawn(self.batches.health_check(), "ingest-health-check")
        consumer = self._spawn(self._consume(), "ingest-consumer")
        stopper = asyncio.create_task(stop.wait(), name="ingest-stop")
        failed = asyncio.create_task(self._failed.wait(), name="ingest-failed")
        try:
            done, _ = await asyncio.wait({consumer, stopper, failed}, return_when=asyncio.FIRST_COMPLETED)
            if consumer in done:
                self._watch(consumer)  # in case its done-callback has not run yet
            if self._failure is not None:
                raise self._failure
            if consumer in done:
                raise BridgeTaskDied("ingest task 'ingest-consumer' ended on its own")
            self._stopping.set()
            self._inbox.put_nowait(None)  # wake the consumer for its final flush
            try:
                async with asyncio.timeout(_FINAL_FLUSH_TIMEOUT + 1.0):
                    await consumer
            except TimeoutError:
                log.warning("ingest: final flush did not finish in time; unacked messages will be redelivered")
            if self._failure is not None:  # a task died during the final flush
                raise self._failure
        finally:
            for task in (health, consumer, stopper, failed):
                task.cancel()
            await asyncio.gather(health, consumer, stopper, failed, return_exceptions=True)
            await self.subscriber.stop()

    def _reconnected(self) -> None:
        """Dead letters published on the previous connection may never be acknowledged now; their
        originals belong to that connection too and will be redelivered (and dead-lettered again)."""
        self.dead_letters.forget()

    def _published(self, mid: int, failed: bool, reason: str) -> None:
        self.dead_letters.acked(mid, failed, reason)

    async def _consume(self) -> None:
        """Collect messages into a batch; write it when full, when the window is full, or when due.

        A parse task turns what has arrived into chunks of parsed messages, in order. Writes run as
        tasks (at most ``writes_in_flight`` at once) so that the next batch is parsed while the current
        one is on its way to InfluxDB; each write acks its messages only after the write before it
        has acked, so acks go out in arrival order.
        """
        chunks: asyncio.Queue[_Chunk | None] = asyncio.Queue(1)
        parse = self._spawn(self._parse_chunks(chunks), "ingest-parse")
        batch: list[Parsed] = []
        points = 0
        first_at = last_at = 0.0
        flushes: deque[asyncio.Task[bool]] = deque()
        try:
            while True:
                _reap(flushes)
                timeout: float | None = None
                if batch:
                    now = time.monotonic()
                    timeout = max(0.0, min(first_at + self.ingest.flush_interval, last_at + self.linger) - now)
                try:
                    if chunks.empty():
                        async with asyncio.timeout(timeout):
                            chunk = await chunks.get()
                    else:
                        chunk = chunks.get_nowait()
                except TimeoutError:
                    await self._start_flush(flushes, batch)
                    batch, points = [], 0
                    continue
                if chunk is None:  # stop requested
                    await self._final_flush(flushes, batch)
                    return
                for message, result in zip(*chunk, strict=True):
                    parsed = self._parsed(message, result)
                    now = time.monotonic()
                    if not batch:
                        first_at = now
                    last_at = now
                    batch.append(parsed)
                    points += parsed.points
                    if points >= self.ingest.batch_size or len(batch) + self._unacked_in_flight >= self.receive_maximum:
                        await self._start_flush(flushes, batch)
                        batch, points = [], 0
                if flushes:
                    await asyncio.sleep(0)  # let the writes in flight send, read their answer and ack
        finally:
            parse.cancel()
            for task in flushes:
                task.cancel()
            await asyncio.gather(parse, *flushes, return_exceptions=True)

    async def _parse_chunks(self, chunks: asyncio.Queue[_Chunk | None]) -> None:
        """Take what has arrived (up to a chunk), parse it, pass it on in order; None ends."""
        while True:
            item = await self._inbox.get()
            messages: list[Message] = []
            while item is not None:
                messages.append(item)
                if len(messages) >= _CHUNK or self._inbox.empty():
                    break
                item = self._inbox.get_nowait()
            self.subscriber.taken(messages)
            if self._inject_fault and messages:
                raise RuntimeError(f"fault injected by {FAULT_ENV}=parse")
            if messages:
                await chunks.put((messages, parse_many([(m.topic, m.payload) for m in messages], self.rules)))
            if item is None:
                await chunks.put(None)
                return

    async def _final_flush(self, flushes: deque[asyncio.Task[bool]], batch: list[Parsed]) -> None:
        """On stop: write what is held (one attempt) and let the writes in flight finish, within 2 s."""
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(_FINAL_FLUSH_TIMEOUT):
                if batch:
                    await self._start_flush(flushes, batch, final=True)
                while flushes:
                    await flushes[0]
                    flushes.popleft()

    async def _start_flush(
        self, flushes: deque[asyncio.Task[bool]], batch: list[Parsed], *, final: bool = False
    ) -> None:
        """Start writing ``batch`` in a task, after waiting for a free slot among the writes in flight."""
        while len(flushes) >= self.writes_in_flight:
            await flushes[0]
            flushes.popleft()
        previous = flushes[-1] if flushes else None
        self._unacked_in_flight += len(batch)
        flushes.append(self._spawn(self._flush(batch, previous, final=final), "ingest-write"))
        await asyncio.sleep(0)  # let the write start now, while the next batch is being parsed

    def _parsed(self, message: Message, result: ParsedPayload) -> Parsed:
        """Count a parsed message; dead-letter it if it is malformed."""
        self.stats.received += 1
        kind = message.topic.rpartition("/")[2]
        self.stats.received_by_kind[kind] = self.stats.received_by_kind.get(kind, 0) + 1
        if isinstance(result, str):
            if not message.payload and kind in TOPIC_KINDS and kind != "telemetry":
                self.stats.ignored += 1  # an empty retained message: someone cleared the retained alert
                return Parsed(message, b"", 0)
            return Parsed(message, b"", 0, self.dead_letters.send(message, result))
        return Parsed(message, *result)

    async def _flush(
        self, batch: list[Parsed], previous: asyncio.Task[bool] | None = None, *, final: bool = False
    ) -> bool:
        """Write and ack ``batch`` (``BatchWriter.write_and_ack``); its messages leave the window after."""
        try:
            return await self.batches.write_and_ack(batch, previous, final=final)
        finally:
            self._unacked_in_flight -= len(batch)


async def run_ingest(config: IngestSettings, stop: asyncio.Event) -> None:
    """``edge-agent ingest``: bridge MQTT telemetry into InfluxDB until ``stop`` is set.

    Needs the ``mqtt`` and ``influxdb`` sections; raises ``ConfigError`` naming the missing one.
    """
    problems = []
    if config.mqtt is None:
        problems.append(
            "mqtt: section missing; the bridge reads telemetry from this broker. Fix: add mqtt: {host: ...}"
        )
    if config.influxdb is None:
        problems.append(
            "influxdb: section missing; the bridge writes to this database. Fix: add influxdb: {version: ..., url: ...}"
        )
    if config.mqtt is None or config.influxdb is None:
        raise ConfigError("configuration", problems)
    writer = make_writer(config.influxdb)
    bridge = IngestBridge(config.mqtt, config.ingest, writer, dead_letter_prefix=config.ingest.dead_letter_prefix)
    try:
        await bridge.run(stop)
    except BridgeTaskDied as exc:
        log.critical(
            "ingest: %s. Stopping with exit status %d so the service manager restarts the bridge; messages not "
            "yet acked are redelivered to the next run. This is a bug, please report it with this traceback",
            exc,
            EXIT_TASK_DIED,
            exc_info=exc.__cause__ or exc,
        )
        raise SystemExit(EXIT_TASK_DIED) from exc
    finally:
        await writer.close()
        log.info(
            "ingest: stopped; received %d messages, wrote %d points, %d malformed (%d forwarded to %s/…, %d of "
            "them refused by the broker), %d refused by InfluxDB, %d QoS 0 messages dropped while the queue was full",
            bridge.stats.received,
            bridge.stats.written_points,
            bridge.stats.malformed,
            bridge.stats.dead_lettered,
            bridge.dead_letter_prefix,
            bridge.stats.dead_letter_failed,
            bridge.stats.rejected,
            bridge.stats.dropped,
        )
