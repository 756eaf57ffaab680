"""The bridge's MQTT side: the paho client, its persistent session, and the hand-off of messages.

The bridge holds a persistent MQTT session (fixed client id, clean start off, session never
expires) with QoS 1 subscriptions, so the broker keeps every message for it while it is away, and
acknowledges manually (paho ``manual_ack=True``): ``ack`` is called only once a message's points
are stored. MQTT 5 lets the session expiry be set explicitly and announces a Receive Maximum, the
number of unacked messages the broker may send.

Packet ids belong to one connection, so every message is stamped with the connection's
``generation`` (bumped on each connect) and a message from before a reconnect is never acked on
the new one: the broker redelivers it. Two clients with one id take the session from each other
in turn; the quick drops that follow are detected and named.

Threads: paho runs its network loop in its own thread; callbacks only hand messages over to the
event loop with ``call_soon_threadsafe``, and the loop is woken once per burst, not per message.

Memory: messages received and not yet parsed are counted (``ingest.max_queued_messages`` and
``ingest.max_queued_bytes``). QoS 1 messages are bounded by the receive window (the broker sends no
more until some are acked) and always taken. QoS 0 messages have no such window: beyond the bound
they are dropped and counted (``stats.dropped``), with one log line when dropping starts and one
when the queue has drained to half, saying how many were dropped.
"""

from __future__ import annotations

import asyncio
import logging
import threading
import time
from collections import deque
from collections.abc import Callable, Sequence
from typing import Any

import paho.mqtt.client as mqtt
from paho.mqtt.properties import Properties
from paho.mqtt.reasoncodes import ReasonCode

from edge_agent.delivery.config import MqttConfig
from edge_agent.delivery.mqtt_session import STOP_TIMEOUT_S, MqttSession
from edge_agent.ingest.config import IngestConfig
from edge_agent.ingest.parsing import TOPIC_KINDS
from edge_agent.ingest.stats import IngestStats, Message

__all__ = ["MAX_RECEIVE_MAXIMUM", "Subscriber", "subscriptions", "telemetry_subscription"]

log = logging.getLogger(__name__)

MAX_RECEIVE_MAXIMUM = 65535
SESSION_TAKEN_OVER = 142  # MQTT 5 DISCONNECT reason code
_STABLE_CONNECTION = 10.0  # seconds; a connection dropped sooner counts as a quick drop
_FLAPS_BEFORE_ERROR = 3


def telemetry_subscription(topic_prefix: str, share_group: str | None, kind: str = "telemetry") -> str:
    """``{prefix}/+/+/+/+/{kind}``, behind ``$share/<group>/`` when bridges share the load."""
    topic = f"{topic_prefix.rstrip('/')}/+/+/+/+/{kind}"
    return f"$share/{share_group}/{topic}" if share_group else topic


def subscriptions(topic_prefix: str, share_group: str | None) -> list[str]:
    """Every topic filter the bridge reads: telemetry, alert events and anomaly scores."""
    return [telemetry_subscription(topic_prefix, share_group, kind) for kind in TOPIC_KINDS]


class Subscriber:
    """The paho client of one bridge: connects, subscribes, hands messages to ``inbox``, acks, publishes.

    ``on_reconnected`` runs in the event loop after every (re)connect (what was published on the old
    connection may never be acknowledged now); ``on_published(mid, failed, reason)`` when the broker
    answered a publish. ``stopping`` set means a disconnect is expected and not worth a log line.
    """

    def __init__(
        self,
        mqtt_config: MqttConfig,
        ingest: IngestConfig,
        stats: IngestStats,
        inbox: asyncio.Queue[Message | None],
        stopping: asyncio.Event,
        *,
        receive_maximum: int,
        dead_letter_prefix: str,
        on_reconnected: Callable[[], None],
        on_published: Callable[[int, bool, str], None],
    ) -> None:
        self.mqtt_config = mqtt_config
        self.ingest = ingest
        self.stats = stats
        self.receive_maximum = receive_maximum
        self.topics = subscriptions(mqtt_config.topic_prefix, ingest.share_group)
        self.dead_letter_prefix = dead_letter_prefix
        self._on_reconnected = on_reconnected
        self._on_published = on_published
        self._inbox = inbox
        self._stopping = stopping
        # Hand-off from paho's thread: messages are appended here and the event loop is woken once per
        # burst, not once per message (each wake-up is a write to the loop's self-pipe).
        self._arrivals: deque[Message] = deque()
        self._wake_pending = False
        self._ready = asyncio.Event()
        self._session: MqttSession | None = None
        self._client: mqtt.Client | None = None
        self._generation = 0  # bumped on every (re)connect, in paho's thread
        self._broker_down_logged = False
        self._refused_logged = False
        self._connected_at = 0.0
        self._quick_drops = 0
        self._flapping = False
        # What was received and not yet taken by the parser: counted in paho's thread, uncounted in the loop.
        self._queue_lock = threading.Lock()
        self._dropped_since_full = 0
        self._admitted = self._admitted_bytes = 0  # written by paho's thread only
        self._taken = self._taken_bytes = 0  # written by the event loop only

    @property
    def generation(self) -> int:
        """The current connection; a message of an older one cannot be acked any more."""
        return self._generation

    async def wait_ready(self) -> None:
        """Return once the broker confirmed the subscription (wrap in ``asyncio.timeout``)."""
        await self._ready.wait()

    def start(self) -> None:
        """Create the client and let paho's thread connect (no network I/O in the event loop)."""
        self._start_client()

    async def stop(self) -> None:
        """Disconnect and stop paho's thread; unacked messages are redelivered to the next session."""
        await self._stop_client()

    def publish(self, topic: str, payload: bytes, message: Message) -> mqtt.MQTTMessageInfo | None:
        """Publish QoS 1 on the connection ``message`` came on; None if that connection is gone."""
        client = self._client
        if client is None or message.generation != self._generation:
            return None
        return client.publish(topic, payload, qos=1)

    def ack(self, messages: Sequence[Message]) -> None:
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

    def _start_client(self) -> None:
        # Persistent MQTT 5 session (clean start off, never expires), acked by hand; connect_async
        # does no network I/O here, paho's thread connects and reconnects.
        session = MqttSession(
            self.mqtt_config,
            self.ingest.client_id,
            self,
            protocol=5,
            manual_ack=True,
            receive_maximum=self.receive_maximum,
        )
        self._session, self._client = session, session.client
        session.start()
        log.info(
            "ingest: connecting to MQTT broker %s:%d as %r, subscribing to %s; malformed payloads go to %s/…",
            self.mqtt_config.host,
            self.mqtt_config.port,
            self.ingest.client_id,
            ", ".join(self.topics),
            self.dead_letter_prefix,
        )

    async def _stop_client(self) -> None:
        session, self._client = self._session, None
        if session is None:
            return
        if not await session.stop():
            log.warning("ingest: MQTT network thread did not stop within %.0f s", STOP_TIMEOUT_S)
        self.stats.connected = False

    def _call_in_loop(self, callback: Callable[..., object], *args: Any) -> None:
        if self._session is not None:
            self._session.call_in_loop(callback, *args)

    def on_connect(
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
        self._call_in_loop(self._on_reconnected)
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

    def on_connect_fail(self, _client: mqtt.Client, _userdata: object) -> None:
        self.stats.connected = False
        if not self._broker_down_logged:
            self._broker_down_logged = True
            log.warning(
                "ingest: cannot reach MQTT broker %s:%d; retrying (messages wait in the broker's session)",
                self.mqtt_config.host,
                self.mqtt_config.port,
            )

    def on_disconnect(
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

    def on_subscribe(
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

    def on_message(self, _client: mqtt.Client, _userdata: object, message: mqtt.MQTTMessage) -> None:
        payload = bytes(message.payload)
        if not self._admit(message.qos, len(payload)):
            return
        self._arrivals.append(Message(message.mid, message.qos, message.topic, payload, self._generation))
        if not self._wake_pending:
            self._wake_pending = True
            self._call_in_loop(self._take_arrivals)

    def _admit(self, qos: int, size: int) -> bool:
        """In paho's thread: count a message in, or drop it (QoS 0 only) when the queue is full.

        Lock-free on the common path: only this thread adds to ``_admitted``, only the loop to
        ``_taken``, so their difference is the queue (at worst a moment stale). The lock guards
        the rare change of state and its log line.
        """
        queued = self._admitted - self._taken
        queued_bytes = self._admitted_bytes - self._taken_bytes
        if qos == 0 and (
            queued >= self.ingest.max_queued_messages or queued_bytes + size > self.ingest.max_queued_bytes
        ):
            self._drop(queued, queued_bytes)
            return False
        self._admitted += 1
        self._admitted_bytes += size
        stats = self.stats
        stats.queued, stats.queued_bytes = queued + 1, queued_bytes + size
        if queued >= stats.queued_peak:
            stats.queued_peak = queued + 1
        stats.queued_bytes_peak = max(stats.queued_bytes_peak, queued_bytes + size)
        return True

    def _drop(self, queued: int, queued_bytes: int) -> None:
        with self._queue_lock:
            self.stats.dropped += 1
            self._dropped_since_full += 1
            if self.stats.queue_full:
                return
            self.stats.queue_full = True
        log.warning(
            "ingest: %d messages (%d bytes) wait to be parsed, the limit (ingest.max_queued_messages %d, "
            "max_queued_bytes %d); QoS 0 messages are dropped and counted until it drains",
            queued,
            queued_bytes,
            self.ingest.max_queued_messages,
            self.ingest.max_queued_bytes,
        )

    def taken(self, messages: Sequence[Message]) -> None:
        """In the event loop: ``messages`` left the queue for the parser; say so once when dropping ends."""
        self._taken += len(messages)
        self._taken_bytes += sum(len(message.payload) for message in messages)
        stats = self.stats
        stats.queued = queued = self._admitted - self._taken
        stats.queued_bytes = queued_bytes = self._admitted_bytes - self._taken_bytes
        if not stats.queue_full or (
            queued > self.ingest.max_queued_messages // 2 or queued_bytes > self.ingest.max_queued_bytes // 2
        ):
            return
        with self._queue_lock:
            stats.queue_full = False
            dropped, self._dropped_since_full = self._dropped_since_full, 0
        log.warning("ingest: the queue has drained to half; %d QoS 0 messages were dropped meanwhile", dropped)

    def _take_arrivals(self) -> None:
        """In the event loop: move what paho's thread received into the inbox, in arrival order."""
        self._wake_pending = False  # first: a message appended from now on schedules a new call
        arrivals, put = self._arrivals, self._inbox.put_nowait
        while arrivals:
            put(arrivals.popleft())

    def on_publish(
        self,
        _client: mqtt.Client,
        _userdata: object,
        mid: int,
        reason: ReasonCode,
        _properties: Properties | None,
    ) -> None:
        self._call_in_loop(self._on_published, mid, reason.is_failure, str(reason))
