"""The ingest bridge: telemetry from MQTT into InfluxDB, acknowledged only once it is stored.

How nothing gets lost and nothing duplicates:

- The bridge holds a persistent MQTT session (fixed client id, clean start off, session never
  expires) with a QoS 1 subscription, so the broker keeps every message for it while it is away.
- It acknowledges manually (paho ``manual_ack=True``): a PUBACK goes out only after the message's
  points were written, so a message in flight when the bridge or InfluxDB dies is redelivered.
- Every point carries its sample timestamp and full identity (see ``edge_agent.delivery.payloads``), so a
  redelivered message overwrites itself in InfluxDB instead of adding a second copy.
- While InfluxDB is down, writes are retried with capped, jittered backoff and the messages stay
  unacked. The broker stops sending once the client's receive window is full, so memory stays
  bounded and the backlog waits in the broker (size its ``max_queued_messages`` for the longest
  outage to survive).
- A malformed payload can never succeed, and holding it back would stop the stream for every machine
  behind it. It is published (QoS 1) to a dead-letter topic with the reason (``deadletter``), and
  acked only once the broker acknowledged that copy; counted, logged once per kind per minute.

Besides telemetry the bridge reads alert events (``…/alerts``) and anomaly scores (``…/scores``)
and writes them as the ``alerts`` and ``anomaly_score`` measurements (``edge_agent.alerts.events``).

MQTT 5 is used always, not only for shared subscriptions: it lets the bridge set the session
expiry explicitly and announce a Receive Maximum, the number of unacked messages the broker may
send. Knowing that window, the bridge flushes as soon as it is full instead of waiting for the
flush interval (with MQTT 3.1.1 the broker's own in-flight limit, 20 in Mosquitto, would throttle
it silently). Brokers that cap the window lower still work: a short quiet gap also flushes.

Acks go out in arrival order, as MQTT asks (a malformed message behind a pending batch waits for
that batch). Packet ids belong to one connection, so a message received before a reconnect is
never acked on the new one: the broker redelivers it, and that copy is written (again, harmlessly)
and acked. Every bridge needs its own ``ingest.client_id``: two clients with one id take the
session from each other in turn (the bridge detects this and says so).

Up to two batches are written at once (``writes_in_flight``): the consumer parses the next batch
while InfluxDB stores the current one, and each write acks its messages only after the write
before it has acked, so the order of acks is that of arrival. A write that keeps failing holds back
every ack behind it; the receive window then fills and the broker keeps the rest.

Threads: paho runs its network loop in its own thread; callbacks only hand messages over to the
event loop with ``call_soon_threadsafe``. Everything else runs in the event loop.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
import ssl
import time
from collections import deque
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties
from paho.mqtt.reasoncodes import ReasonCode

from edge_agent.core.errors import ConfigError
from edge_agent.core.payload_json import MAX_PAYLOAD_BYTES
from edge_agent.delivery.config import MqttConfig
from edge_agent.delivery.influx_writer import InfluxWriter, RejectedPoints, WriteFailed, make_writer
from edge_agent.ingest.config import IngestConfig
from edge_agent.ingest.deadletter import dead_letter_payload, dead_letter_topic
from edge_agent.ingest.deadletter import dead_letter_prefix as _dead_letter_prefix
from edge_agent.ingest.parsing import TOPIC_KINDS, ParsedPayload, parse_many, parse_payload
from edge_agent.ingest.problems import ProblemLog, problem_kind
from edge_agent.runtime.config import AgentConfig

__all__ = [
    "TOPIC_KINDS",
    "IngestBridge",
    "IngestStats",
    "backoff_delay",
    "parse_payload",
    "problem_kind",
    "run_ingest",
    "subscriptions",
    "telemetry_subscription",
]

log = logging.getLogger(__name__)

SESSION_NEVER_EXPIRES = 0xFFFFFFFF
MAX_RECEIVE_MAXIMUM = 65535
SESSION_TAKEN_OVER = 142  # MQTT 5 DISCONNECT reason code
_STABLE_CONNECTION = 10.0  # seconds; a connection dropped sooner counts as a quick drop
_FLAPS_BEFORE_ERROR = 3
_FINAL_FLUSH_TIMEOUT = 2.0
_THREAD_STOP_TIMEOUT = 2.0


@dataclass
class IngestStats:
    """Counters for the status page and tests. Messages are MQTT messages; points are InfluxDB points.

    ``writes`` counts successful write requests (a batch is one), ``write_errors`` failed attempts,
    ``rejected`` messages whose points InfluxDB refused as bad data, ``malformed`` messages set aside
    before writing; of those, ``dead_lettered`` were acknowledged by the broker on the dead-letter
    topic and ``dead_letter_failed`` were refused by it (lost, logged at ERROR). ``ignored`` counts
    empty messages on the alerts/scores topics (a retained message being cleared).
    ``received_by_kind`` counts messages per topic kind (telemetry, alerts, scores).
    ``influx_ok`` is None until the start-up ping or a write has answered.
    """

    received: int = 0
    writes: int = 0
    written_points: int = 0
    malformed: int = 0
    rejected: int = 0
    write_errors: int = 0
    acked: int = 0
    dead_lettered: int = 0
    dead_letter_failed: int = 0
    ignored: int = 0
    connected: bool = False
    influx_ok: bool | None = None
    malformed_by_kind: dict[str, int] = field(default_factory=dict)
    received_by_kind: dict[str, int] = field(default_factory=dict)


@dataclass(slots=True)
class _Message:
    mid: int
    qos: int
    topic: str
    payload: bytes
    generation: int


@dataclass(slots=True)
class _Parsed:
    """A message and its points (encoded lines); a malformed one has none and waits for its dead letter's PUBACK."""

    message: _Message
    body: bytes
    points: int
    dead_letter: asyncio.Future[bool] | None = None


_Chunk = tuple[list[_Message], list[ParsedPayload]]  # messages that arrived together, parsed
_CHUNK = 128  # messages parsed together at most


def _reap(flushes: deque[asyncio.Task[bool]]) -> None:
    """Drop the finished writes at the head of ``flushes``; an exception in one (a bug) is raised."""
    while flushes and flushes[0].done():
        flushes.popleft().result()


def backoff_delay(attempt: int, initial: float, cap: float) -> float:
    """Seconds to wait before retry number ``attempt`` (0-based): doubling from ``initial`` up to ``cap``,
    then scaled by a random factor in [0.5, 1] so that bridges restarted together do not retry in step.
    """
    # min(attempt, 32): 2**attempt as a float overflows after ~1000 attempts (8 hours at a 30 s cap).
    return min(cap, initial * 2.0 ** min(attempt, 32)) * random.uniform(0.5, 1.0)


def telemetry_subscription(topic_prefix: str, share_group: str | None, kind: str = "telemetry") -> str:
    """``{prefix}/+/+/+/+/{kind}``, behind ``$share/<group>/`` when bridges share the load."""
    topic = f"{topic_prefix.rstrip('/')}/+/+/+/+/{kind}"
    return f"$share/{share_group}/{topic}" if share_group else topic


def subscriptions(topic_prefix: str, share_group: str | None) -> list[str]:
    """Every topic filter the bridge reads: telemetry, alert events and anomaly scores."""
    return [telemetry_subscription(topic_prefix, share_group, kind) for kind in TOPIC_KINDS]


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
        self.backoff_initial = backoff_initial
        self.backoff_max = backoff_max
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
        self._problems = ProblemLog(problem_log_interval)
        self._dead_letters: dict[int, asyncio.Future[bool]] = {}  # our publish mid -> its PUBACK
        self._dead_letter_refusal_logged = False
        self._inbox: asyncio.Queue[_Message | None] = asyncio.Queue()
        # Hand-off from paho's thread: messages are appended here and the event loop is woken once per
        # burst, not once per message (each wake-up is a write to the loop's self-pipe).
        self._arrivals: deque[_Message] = deque()
        self._wake_pending = False
        self._ready = asyncio.Event()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._client: mqtt.Client | None = None
        self._generation = 0  # bumped on every (re)connect, in paho's thread
        self._stopping = asyncio.Event()
        self._broker_down_logged = False
        self._refused_logged = False
        self._connected_at = 0.0
        self._quick_drops = 0
        self._flapping = False

    # ------------------------------------------------------------------ public
    async def wait_ready(self) -> None:
        """Return once the broker confirmed the subscription (wrap in ``asyncio.timeout``)."""
        await self._ready.wait()

    async def run(self, stop: asyncio.Event) -> None:
        """Bridge until ``stop`` is set or the task is cancelled."""
        self._loop = asyncio.get_running_loop()
        self._client = self._make_client()
        self._start_client(self._client)
        # The health check only reports (a dead database shows at start-up); it must not delay or
        # block the start, so it runs beside the consumer.
        health = asyncio.create_task(self._health_check(), name="ingest-health-check")
        consumer = asyncio.create_task(self._consume(), name="ingest-consumer")
        stopper = asyncio.create_task(stop.wait(), name="ingest-stop")
        try:
            done, _ = await asyncio.wait({consumer, stopper}, return_when=asyncio.FIRST_COMPLETED)
            if consumer in done:
                consumer.result()  # a bug in the consumer: surface it
            else:
                self._stopping.set()
                self._inbox.put_nowait(None)  # wake the consumer for its final flush
                try:
                    async with asyncio.timeout(_FINAL_FLUSH_TIMEOUT + 1.0):
                        await consumer
                except TimeoutError:
                    log.warning("ingest: final flush did not finish in time; unacked messages will be redelivered")
        finally:
            for task in (health, consumer, stopper):
                task.cancel()
            await asyncio.gather(health, consumer, stopper, return_exceptions=True)
            await self._stop_client()

    # ------------------------------------------------------------------ MQTT (paho thread)
    def _make_client(self) -> mqtt.Client:
        config = self.mqtt_config
        client = mqtt.Client(
            CallbackAPIVersion.VERSION2,
            client_id=self.ingest.client_id,
            protocol=mqtt.MQTTv5,
            manual_ack=True,
        )
        if config.username:
            password = config.password.get_secret_value() if config.password else None
            client.username_pw_set(config.username, password)
        if config.tls is not None:
            try:
                client.tls_set(
                    ca_certs=config.tls.ca_file,
                    certfile=config.tls.cert_file,
                    keyfile=config.tls.key_file,
                    cert_reqs=ssl.CERT_REQUIRED,
                )
            except (OSError, ssl.SSLError) as exc:
                raise ConfigError(
                    "configuration",
                    [f"mqtt.tls: cannot load the certificates: {exc}. Fix: check ca_file, cert_file and key_file"],
                ) from exc
            client.tls_insecure_set(config.tls.insecure_skip_hostname_check)
        client.connect_timeout = config.connect_timeout
        client.reconnect_delay_set(min_delay=1, max_delay=30)
        client.on_connect = self._on_connect
        client.on_connect_fail = self._on_connect_fail
        client.on_disconnect = self._on_disconnect
        client.on_subscribe = self._on_subscribe
        client.on_message = self._on_message
        client.on_publish = self._on_publish
        return client

    def _start_client(self, client: mqtt.Client) -> None:
        properties = Properties(PacketTypes.CONNECT)  # type: ignore[no-untyped-call]
        properties.SessionExpiryInterval = SESSION_NEVER_EXPIRES
        properties.ReceiveMaximum = self.receive_maximum
        # connect_async does no network I/O here; paho's thread connects and reconnects.
        client.connect_async(
            self.mqtt_config.host,
            self.mqtt_config.port,
            keepalive=round(self.mqtt_config.keepalive),
            clean_start=False,
            properties=properties,
        )
        client.loop_start()
        log.info(
            "ingest: connecting to MQTT broker %s:%d as %r, subscribing to %s; malformed payloads go to %s/…",
            self.mqtt_config.host,
            self.mqtt_config.port,
            self.ingest.client_id,
            ", ".join(self.topics),
            self.dead_letter_prefix,
        )

    async def _stop_client(self) -> None:
        client, self._client = self._client, None
        if client is None:
            return

        def stop() -> None:
            client.disconnect()
            client.loop_stop()

        try:
            async with asyncio.timeout(_THREAD_STOP_TIMEOUT):
                await asyncio.to_thread(stop)
        except TimeoutError:
            log.warning("ingest: MQTT network thread did not stop within %.0f s", _THREAD_STOP_TIMEOUT)
        self.stats.connected = False

    def _call_in_loop(self, callback: Any, *args: Any) -> None:
        loop = self._loop
        if loop is not None and not loop.is_closed():
            with contextlib.suppress(RuntimeError):  # loop closed between the check and the call
                loop.call_soon_threadsafe(callback, *args)

    def _on_connect(
        self,
        client: mqtt.Client,
        _userdata: object,
        flags: mqtt.ConnectFlags,
        reason: ReasonCode,
        _properties: Properties | None,
    ) -> None:
        if reason.is_failure:
            if self._refused_logged:
                return
            self._refused_logged = True
            log.error(
                "ingest: MQTT broker %s:%d refused the connection: %s. Fix: check mqtt.username/password and the "
                "broker's ACL for client id %r",
                self.mqtt_config.host,
                self.mqtt_config.port,
                reason,
                self.ingest.client_id,
            )
            return
        self._generation += 1
        # Dead letters published on the previous connection may never be acknowledged now; their
        # originals belong to that connection too and will be redelivered (and dead-lettered again).
        self._call_in_loop(self._forget_dead_letters)
        self._refused_logged = False
        self._connected_at = time.monotonic()
        self.stats.connected = True
        level = logging.DEBUG if self._flapping else logging.INFO
        if self._broker_down_logged:
            log.log(level, "ingest: reconnected to MQTT broker (session present: %s)", flags.session_present)
            self._broker_down_logged = False
        else:
            log.log(level, "ingest: connected to MQTT broker (session present: %s)", flags.session_present)
        client.subscribe([(topic, 1) for topic in self.topics])

    def _on_connect_fail(self, _client: mqtt.Client, _userdata: object) -> None:
        self.stats.connected = False
        if not self._broker_down_logged:
            self._broker_down_logged = True
            log.warning(
                "ingest: cannot reach MQTT broker %s:%d; retrying (messages wait in the broker's session)",
                self.mqtt_config.host,
                self.mqtt_config.port,
            )

    def _on_disconnect(
        self,
        _client: mqtt.Client,
        _userdata: object,
        _flags: mqtt.DisconnectFlags,
        reason: ReasonCode,
        _properties: Properties | None,
    ) -> None:
        self.stats.connected = False
        if self._stopping.is_set() or self._client is None:
            return
        lasted = time.monotonic() - self._connected_at
        if lasted >= _STABLE_CONNECTION:
            self._quick_drops = 0
            self._flapping = False
        else:
            self._quick_drops += 1
        if (reason.value == SESSION_TAKEN_OVER or self._quick_drops >= _FLAPS_BEFORE_ERROR) and not self._flapping:
            # Mosquitto just closes the socket of the older client, so the reason code cannot be relied on.
            self._flapping = True
            log.error(
                "ingest: the MQTT connection keeps dropping right after it is made (%s). Most likely another "
                "client uses the same client id %r and takes over this bridge's session; the two push each "
                "other off. Fix: give every bridge its own ingest.client_id (and the same ingest.share_group to "
                "split the stream between them). Further reconnects are logged at DEBUG",
                reason,
                self.ingest.client_id,
            )
        if self._flapping:
            log.debug("ingest: lost MQTT connection again (%s)", reason)
            self._broker_down_logged = True
            return
        if not self._broker_down_logged:
            self._broker_down_logged = True
            log.warning(
                "ingest: lost MQTT connection (%s); reconnecting. Messages not yet acked will be redelivered",
                reason,
            )

    def _on_subscribe(
        self,
        _client: mqtt.Client,
        _userdata: object,
        _mid: int,
        reasons: list[ReasonCode],
        _properties: Properties | None,
    ) -> None:
        failed = [r for r in reasons if r.is_failure]
        if failed:
            log.error(
                "ingest: the broker refused the subscription to %s: %s. Fix: allow this client to read the topics",
                ", ".join(self.topics),
                failed[0],
            )
            return
        self._call_in_loop(self._ready.set)

    def _on_message(self, _client: mqtt.Client, _userdata: object, message: mqtt.MQTTMessage) -> None:
        self._arrivals.append(
            _Message(message.mid, message.qos, message.topic, bytes(message.payload), self._generation)
        )
        if not self._wake_pending:
            self._wake_pending = True
            self._call_in_loop(self._take_arrivals)

    def _take_arrivals(self) -> None:
        """In the event loop: move what paho's thread received into the inbox, in arrival order."""
        self._wake_pending = False  # first: a message appended from now on schedules a new call
        arrivals, put = self._arrivals, self._inbox.put_nowait
        while arrivals:
            put(arrivals.popleft())

    def _on_publish(
        self,
        _client: mqtt.Client,
        _userdata: object,
        mid: int,
        reason: ReasonCode,
        _properties: Properties | None,
    ) -> None:
        self._call_in_loop(self._dead_letter_acked, mid, reason.is_failure, str(reason))

    # ------------------------------------------------------------------ event loop
    async def _health_check(self) -> None:
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

    async def _consume(self) -> None:
        """Collect messages into a batch; write it when full, when the window is full, or when due.

        A parse task turns what has arrived into chunks of parsed messages, in order. Writes run as
        tasks (at most ``writes_in_flight`` at once) so that the next batch is parsed while the current
        one is on its way to InfluxDB; each write acks its messages only after the write before it
        has acked, so acks go out in arrival order.
        """
        chunks: asyncio.Queue[_Chunk | None] = asyncio.Queue(1)
        parse = asyncio.create_task(self._parse_chunks(chunks), name="ingest-parse")
        batch: list[_Parsed] = []
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
            messages: list[_Message] = []
            while item is not None:
                messages.append(item)
                if len(messages) >= _CHUNK or self._inbox.empty():
                    break
                item = self._inbox.get_nowait()
            if messages:
                await chunks.put((messages, parse_many([(m.topic.rpartition("/")[2], m.payload) for m in messages])))
            if item is None:
                await chunks.put(None)
                return

    async def _final_flush(self, flushes: deque[asyncio.Task[bool]], batch: list[_Parsed]) -> None:
        """On stop: write what is held (one attempt) and let the writes in flight finish, within 2 s."""
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(_FINAL_FLUSH_TIMEOUT):
                if batch:
                    await self._start_flush(flushes, batch, final=True)
                while flushes:
                    await flushes[0]
                    flushes.popleft()

    async def _start_flush(
        self, flushes: deque[asyncio.Task[bool]], batch: list[_Parsed], *, final: bool = False
    ) -> None:
        """Start writing ``batch`` in a task, after waiting for a free slot among the writes in flight."""
        while len(flushes) >= self.writes_in_flight:
            await flushes[0]
            flushes.popleft()
        previous = flushes[-1] if flushes else None
        self._unacked_in_flight += len(batch)
        flushes.append(asyncio.create_task(self._flush(batch, previous, final=final), name="ingest-write"))
        await asyncio.sleep(0)  # let the write start now, while the next batch is being parsed

    def _parsed(self, message: _Message, result: ParsedPayload) -> _Parsed:
        """Count a parsed message; dead-letter it if it is malformed."""
        self.stats.received += 1
        kind = message.topic.rpartition("/")[2]
        self.stats.received_by_kind[kind] = self.stats.received_by_kind.get(kind, 0) + 1
        if isinstance(result, str):
            if not message.payload and kind in TOPIC_KINDS and kind != "telemetry":
                self.stats.ignored += 1  # an empty retained message: someone cleared the retained alert
                return _Parsed(message, b"", 0)
            return _Parsed(message, b"", 0, self._dead_letter(message, result))
        return _Parsed(message, *result)

    def _dead_letter(self, message: _Message, reason: str) -> asyncio.Future[bool]:
        """Count and log a malformed payload and publish it to the dead-letter topic; the future is its PUBACK."""
        kind = problem_kind(reason)
        self.stats.malformed += 1
        self.stats.malformed_by_kind[kind] = self.stats.malformed_by_kind.get(kind, 0) + 1
        topic = dead_letter_topic(self.dead_letter_prefix, self.mqtt_config.topic_prefix, message.topic)
        skipped = self._problems.due(kind)
        if skipped is not None:
            log.warning(
                "ingest: malformed payload on %s: %s. Forwarded to %s and acked%s (one line per kind of problem "
                "per %.0f s; each one at DEBUG)",
                message.topic,
                reason,
                topic,
                f"; {skipped} more with this problem since the last line" if skipped else "",
                self._problems.interval,
            )
        log.debug(
            "ingest: malformed payload on %s: %s; payload starts %r", message.topic, reason, message.payload[:200]
        )
        loop = asyncio.get_running_loop()
        future: asyncio.Future[bool] = loop.create_future()
        client = self._client
        if client is None or message.generation != self._generation:
            future.set_result(False)  # this copy is never acked; its redelivery is dead-lettered then
            return future
        envelope = dead_letter_payload(
            topic=message.topic,
            payload=message.payload,
            reason=reason,
            kind=kind,
            received_at_ns=time.time_ns(),
            bridge=self.ingest.client_id,
            max_bytes=MAX_PAYLOAD_BYTES,
        )
        info = client.publish(topic, envelope, qos=1)
        if info.rc not in (mqtt.MQTT_ERR_SUCCESS, mqtt.MQTT_ERR_NO_CONN):
            self._dead_letter_refused(f"paho could not queue it ({mqtt.error_string(info.rc)})")
            future.set_result(False)
            return future
        # on_publish arrives through call_soon_threadsafe, so never before this line runs.
        self._dead_letters[info.mid] = future
        return future

    def _dead_letter_acked(self, mid: int, failed: bool, reason: str) -> None:
        future = self._dead_letters.pop(mid, None)
        if future is None or future.done():
            return
        if failed:
            self._dead_letter_refused(f"the broker answered {reason}")
        else:
            self.stats.dead_lettered += 1
        future.set_result(not failed)

    def _dead_letter_refused(self, why: str) -> None:
        self.stats.dead_letter_failed += 1
        if not self._dead_letter_refusal_logged:
            self._dead_letter_refusal_logged = True
            log.error(
                "ingest: a malformed payload could not be forwarded to the dead-letter topic under %s/ (%s); it is "
                "acked anyway so the stream goes on, and is lost. Fix: allow client id %r to publish to %s/# in the "
                "broker's ACL. Further failures are only counted (dead_letter_failed)",
                self.dead_letter_prefix,
                why,
                self.ingest.client_id,
                self.dead_letter_prefix,
            )

    def _forget_dead_letters(self) -> None:
        pending, self._dead_letters = self._dead_letters, {}
        for future in pending.values():
            if not future.done():
                future.set_result(False)

    async def _flush(
        self, batch: Sequence[_Parsed], previous: asyncio.Task[bool] | None = None, *, final: bool = False
    ) -> bool:
        """Write the batch (retrying while InfluxDB is unavailable), then ack its messages in order.

        ``previous`` is the write of the batch before this one: its acks go out first, and if it
        left its messages unacked (stopping while InfluxDB is down) this batch leaves them too.
        True once acked.
        """
        try:
            points = sum(parsed.points for parsed in batch)
            written: bool | None = True
            if points:
                body = b"\n".join([parsed.body for parsed in batch if parsed.points])
                try:
                    written = await self._write_with_retry(body, points, final=final)
                except RejectedPoints as exc:
                    written = await self._isolate_rejected(batch, exc, final=final)
            if previous is not None and not await previous:
                return False
            if written is None:
                return False  # stopping while InfluxDB is down: leave the messages unacked for redelivery
            dead_letters = [parsed.dead_letter for parsed in batch if parsed.dead_letter is not None]
            if dead_letters:
                # A malformed message is acked only once its copy on the dead-letter topic is safe.
                await asyncio.gather(*dead_letters)
            self._ack([parsed.message for parsed in batch])
            return True
        finally:
            self._unacked_in_flight -= len(batch)

    async def _write_with_retry(self, body: bytes, points: int, *, final: bool) -> bool | None:
        """True once written; None if stopping before success. ``RejectedPoints`` propagates."""
        attempt = 0
        while True:
            try:
                await self.writer.write(body)
            except RejectedPoints:
                self.stats.write_errors += 1
                raise
            except WriteFailed as exc:
                self.stats.write_errors += 1
                if self.stats.influx_ok is not False:
                    log.warning("ingest: %s; retrying with backoff, messages stay unacked in the broker", exc)
                self.stats.influx_ok = False
                if final or self._stopping.is_set():
                    return None
                delay = backoff_delay(attempt, self.backoff_initial, self.backoff_max)
                attempt += 1
                with contextlib.suppress(TimeoutError):
                    async with asyncio.timeout(delay):
                        await self._stopping.wait()
                if self._stopping.is_set():
                    return None
                continue
            if self.stats.influx_ok is False:
                log.info(
                    "ingest: InfluxDB at %s accepts writes again after %d failed attempt(s)",
                    self.writer.target,
                    attempt,
                )
            self.stats.influx_ok = True
            self.stats.writes += 1
            self.stats.written_points += points
            return True

    async def _isolate_rejected(self, batch: Sequence[_Parsed], first: RejectedPoints, *, final: bool) -> bool | None:
        """InfluxDB refused part of a batch: write message by message to find and count the culprits.

        Rewriting the accepted points is harmless (same identity, same values: they overwrite).
        """
        if len(batch) == 1:
            self._count_rejected(batch[0].message, first)
            return True
        for parsed in batch:
            if not parsed.points:
                continue
            try:
                result = await self._write_with_retry(parsed.body, parsed.points, final=final)
            except RejectedPoints as exc:
                self._count_rejected(parsed.message, exc)
                continue
            if result is None:
                return None
        return True

    def _count_rejected(self, message: _Message, exc: RejectedPoints) -> None:
        self.stats.rejected += 1
        kind = "rejected: " + problem_kind(exc.detail or str(exc))
        skipped = self._problems.due(kind)
        if skipped is not None:
            log.error(
                "ingest: InfluxDB refused points of a message on %s, which are lost: %s%s (one line per kind of "
                "refusal per %.0f s; each one at DEBUG)",
                message.topic,
                exc,
                f"; {skipped} more refused for this reason since the last line" if skipped else "",
                self._problems.interval,
            )
        log.debug("ingest: refused message on %s: %s", message.topic, exc)

    def _ack(self, messages: Sequence[_Message]) -> None:
        """PUBACK each message of the current connection; older ones will be redelivered and acked then."""
        client = self._client
        if client is None:
            return
        generation = self._generation
        for message in messages:
            if message.qos == 0 or message.generation != generation:
                continue
            if client.ack(message.mid, message.qos) == mqtt.MQTT_ERR_SUCCESS:
                self.stats.acked += 1
            # else: the connection just dropped; the broker redelivers the message and it is acked then.


async def run_ingest(config: AgentConfig, stop: asyncio.Event) -> None:
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
    finally:
        await writer.close()
        log.info(
            "ingest: stopped; received %d messages, wrote %d points, %d malformed (%d forwarded to %s/…, %d of "
            "them refused by the broker), %d refused by InfluxDB",
            bridge.stats.received,
            bridge.stats.written_points,
            bridge.stats.malformed,
            bridge.stats.dead_lettered,
            bridge.dead_letter_prefix,
            bridge.stats.dead_letter_failed,
            bridge.stats.rejected,
        )
