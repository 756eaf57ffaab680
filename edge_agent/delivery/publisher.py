"""MQTT publisher sink: batches go through the durable outbox, then out with QoS 1; retained status.

The path of one batch (docs/delivery.md has the whole contract):

1. ``submit`` encodes the batch and appends it to the outbox (SQLite, in the outbox's own thread).
   Once ``submit`` returns, the batch survives a ``kill -9`` of the agent.
2. The pump task (``edge_agent.delivery.mqtt_pump``) reads the outbox in order, in chunks, and
   hands entries to paho as long as fewer than ``outbox.max_in_flight`` messages await their
   PUBACK. paho sends them from its own network thread, so the event loop never waits on the broker.
3. paho's ``on_publish`` (the PUBACK; with ``mqtt.qos: 0`` merely "written to the socket", which
   gives up the guarantee) is passed to the event loop with ``call_soon_threadsafe``; the
   ack task deletes acknowledged entries in batches.

A backlog left by an outage (or by a previous run of the agent) is simply the front of the outbox:
it drains in order, a window of messages at a time, while new batches keep being appended behind
it, so polling never stops and nothing overtakes. Its replay is reported (``edge_agent.delivery.replay``:
a start line, progress at most every 10 s, an end line; the same figures in the status payload).
While the broker is away paho keeps the in-flight window in memory and re-sends it after
reconnecting (DUP flag); everything else waits on disk.

The session (``edge_agent.delivery.mqtt_session``) is persistent (MQTT 3.1.1, clean session off,
fixed client id). Reconnects use capped, jittered backoff (``edge_agent.core.backoff``): paho's own
delay is replaced before each wait, so a hundred agents restarted together do not reconnect in step.

Connection problems are logged once per outage, in words that say the fix: a refused login (never
echoing the password), a certificate the CA does not vouch for, a certificate for another host
name, an unreachable broker. Retries continue in every case: a credential or a certificate can be
fixed on the broker side while the agent waits.

Topics (``prefix`` = ``mqtt.topic_prefix``):
  ``{prefix}/{site}/{area}/{line}/{machine}/telemetry``  one message per poll, QoS 1
  ``{prefix}/{site}/{area}/{line}/{machine}/status``     retained: machine up / down
  ``{prefix}/{site}/_agent/{client_id}/status``           retained: agent online / offline (last
  will), with the backlog (entries, bytes), the drop counters of the outbox and the progress of
  a backlog replay (``replay``: total, done, active)
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import threading
import time
from collections.abc import Callable
from typing import Any

import paho.mqtt.client as mqtt
from paho.mqtt.reasoncodes import ReasonCode

from edge_agent import __version__
from edge_agent.core.backoff import Backoff
from edge_agent.core.origin import Origin
from edge_agent.core.samples import Batch
from edge_agent.delivery.config import MqttConfig, OutboxConfig
from edge_agent.delivery.mqtt_pump import OutboxPump, PublisherStats
from edge_agent.delivery.mqtt_session import MqttSession, Will, describe_refusal, diagnose_connect_failure
from edge_agent.delivery.outbox import Outbox, default_outbox_path
from edge_agent.delivery.payloads import encode_json, encode_line_protocol
from edge_agent.delivery.replay import BacklogReplay

__all__ = ["CommandHandler", "MqttPublisher", "PublisherStats", "agent_status_topic"]

log = logging.getLogger(__name__)

STATUS_EVERY_S = 5.0  # the retained agent status (with the backlog) is refreshed this often while it changes
CLOSE_GRACE_S = 1.0  # close() waits this long for PUBACKs, and again for the offline status (runtime allows 3 s)


CommandHandler = Callable[[str, bytes], None]
"""``handler(topic, payload)``, called on the event loop for each message on a subscribed topic."""


def agent_status_topic(config: MqttConfig, site: str, client_id: str) -> str:
    """The retained topic where the agent says online / offline."""
    return f"{config.topic_prefix}/{site}/_agent/{client_id}/status"


class MqttPublisher:
    """Publishes batches through the outbox to an MQTT broker; never blocks polling, never raises for a down broker.

    A ``DeliverySink`` (``edge_agent.delivery.output``).
    """

    name = "mqtt"

    def __init__(
        self,
        config: MqttConfig,
        site: str,
        client_id: str | None = None,
        outbox: OutboxConfig | None = None,
    ) -> None:
        self.config = config
        self.site = site
        self.client_id = client_id or config.client_id or f"edge-agent-{site}"
        self.status_topic = agent_status_topic(config, site, self.client_id)
        self.stats = PublisherStats()
        outbox_config = outbox or OutboxConfig()
        self.max_in_flight = outbox_config.max_in_flight
        self.outbox = Outbox(
            outbox_config.path or default_outbox_path(self.client_id),
            max_bytes=int(outbox_config.max_bytes),
            max_age=outbox_config.max_age,
            synchronous=outbox_config.synchronous,
        )
        self.backoff = Backoff(initial=1.0, cap=30.0)
        self.replay = BacklogReplay(self.outbox, f"the broker {config.host}:{config.port}")
        self._connected = threading.Event()
        self._down_logged = False
        self._machine_status: dict[str, bytes] = {}  # topic -> last retained payload
        self._commands: dict[str, CommandHandler] = {}  # subscribed topic -> handler (on the event loop)
        self._status_dirty = asyncio.Event()
        self._tasks: list[asyncio.Task[None]] = []
        self._started = False
        self._closing = False
        # Persistent session (clean session off, fixed client id). The outbox bounds what paho
        # holds: the in-flight window, plus a few status messages.
        self._session = MqttSession(
            config,
            self.client_id,
            self,
            will=Will(self.status_topic, self._status_payload("offline", final=False)),
            max_inflight=self.max_in_flight,
            max_queued=max(config.max_queued_messages, self.max_in_flight + 100),
        )
        self._client = self._session.client
        self._pump = OutboxPump(
            self.outbox,
            self._session,
            self.replay,
            self.stats,
            qos=config.qos,
            max_in_flight=self.max_in_flight,
            is_connected=self._connected.is_set,
            on_progress=self._status_dirty.set,
        )

    @property
    def connected(self) -> bool:
        """Whether the broker session is up right now."""
        return self._connected.is_set()

    @property
    def target(self) -> str:
        """The broker, as ``host:port``."""
        return f"{self.config.host}:{self.config.port}"

    @property
    def in_flight(self) -> int:
        """Telemetry messages handed to paho and not yet acknowledged."""
        return self._pump.in_flight

    # ------------------------------------------------------------------ Sink
    async def start(self) -> None:
        """Open the outbox, start connecting in paho's thread; returns at once even if the broker is down."""
        await self.outbox.open()
        self._session.start()
        self._started = True
        self._tasks = [
            *self._pump.tasks(),
            asyncio.create_task(self._publish_status_periodically(), name="mqtt:status"),
        ]
        log.info(
            "MQTT: connecting to %s:%d as %s; outbox %s",
            self.config.host,
            self.config.port,
            self.client_id,
            self.outbox.path,
        )

    async def submit(self, batch: Batch, origin: Origin) -> None:
        """Store one poll's batch in the outbox; the pump sends it when its turn comes."""
        encode = encode_json if self.config.payload_format == "json" else encode_line_protocol
        topic = origin.topic(self.config.topic_prefix, "telemetry")
        payload = encode(batch, origin)
        self.stats.submitted += 1
        await self._store(topic, payload, len(batch.samples), "batch", origin.machine)

    async def submit_message(self, origin: Origin, kind: str, payload: bytes, *, retain: bool = False) -> None:
        """Send any other message of a machine (e.g. ``kind="alerts"``) through the outbox, QoS 1, in order.

        For events that must not be lost either (alert raised / cleared, anomaly scores): same
        durability, same bounds, counted as batches with 0 samples. With ``retain`` the broker keeps
        the message as the topic's current state; because the outbox sends in order, the last one
        retained is the newest (alert events use it: a late subscriber sees the open alert, or the
        ``cleared`` event that closed the last one). The machine's up/down status is retained by
        ``machine_state_changed`` instead (it is not worth a disk write).
        """
        topic = origin.topic(self.config.topic_prefix, kind)
        await self._store(topic, payload, 0, f"{kind} message", origin.machine, retain=retain)

    async def _store(
        self, topic: str, payload: bytes, samples: int, what: str, machine: str, *, retain: bool = False
    ) -> None:
        """Append to the outbox (counted as dropped when it cannot keep it) and wake the pump."""
        try:
            seq = await self.outbox.append(topic, payload, samples, retain=retain)
        except RuntimeError as exc:  # outbox closed: the agent is shutting down
            log.debug("MQTT: %s of %s not stored: %s", what, machine, exc)
            seq = None
        if seq is None:
            self.stats.dropped += 1
        self._pump.wake()
        self._status_dirty.set()

    async def submit_event(self, origin: Origin, kind: str, event: dict[str, Any]) -> None:
        """Send an alert event (``kind="alerts"``, retained) or an anomaly score (``"scores"``) as JSON, durably."""
        try:
            payload = json.dumps(event, allow_nan=False).encode()
        except (TypeError, ValueError):  # a bug of the agent: say so, keep going
            log.exception("MQTT: %s of %s cannot be encoded as JSON; not stored", kind, origin.machine)
            return
        await self.submit_message(origin, kind, payload, retain=kind == "alerts")

    def subscribe(self, topic: str, handler: CommandHandler) -> None:
        """Receive commands on ``topic`` (QoS 1); subscribed again after every reconnect.

        ``handler(topic, payload)`` runs on the event loop and must return quickly (start a task
        for real work). An exception in it is logged, never passed on to paho's thread.
        """
        self._commands[topic] = handler
        if self.connected:
            self._client.subscribe(topic, qos=1)

    def send_reply(self, topic: str, payload: bytes) -> None:
        """Answer a command: QoS 1, not retained, not through the outbox (an answer nobody waits for
        any more is worth no disk write); dropped when the broker is away."""
        if self.connected:
            self._client.publish(topic, payload, qos=1)

    def machine_state_changed(self, origin: Origin, state: str, reason: str | None) -> None:
        """Publish the retained machine status (again after every reconnect; the latest one wins)."""
        topic = origin.topic(self.config.topic_prefix, "status")
        payload = json.dumps({"state": state, "reason": reason, "since": time.time_ns()}).encode()
        self._machine_status[topic] = payload
        if self.connected:
            self._client.publish(topic, payload, qos=1, retain=True)

    async def close(self) -> None:
        """Wait briefly for PUBACKs, say offline (retained), disconnect, close the outbox."""
        if not self._started:
            return
        self._started = False
        self._closing = True
        try:
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(CLOSE_GRACE_S):
                    await self._pump.wait_acked()
            for task in self._tasks:
                task.cancel()
            await asyncio.gather(*self._tasks, return_exceptions=True)
            await self._pump.flush_acks()
            self.replay.interrupt("the agent is stopping")
            if self.connected:
                info = self._client.publish(self.status_topic, self._status_payload("offline"), qos=1, retain=True)
                with contextlib.suppress(RuntimeError, ValueError):
                    await asyncio.to_thread(info.wait_for_publish, CLOSE_GRACE_S)
        finally:
            # Also when the caller's timeout cancels us: the outbox's lock and file must be let go.
            for task in self._tasks:
                task.cancel()
            await self.outbox.close()
            await self._session.stop()
        log.info(
            "MQTT: stopped; %d batch(es) wait in the outbox for the next start, %d dropped since it was created",
            self.outbox.stats.entries,
            self.outbox.stats.dropped_batches,
        )

    # ------------------------------------------------------------------ event-loop tasks
    async def _publish_status_periodically(self) -> None:
        """Keep the retained agent status (backlog, drops) current, at most every few seconds."""
        while True:
            await self._status_dirty.wait()
            self._status_dirty.clear()
            if self.connected:
                self._client.publish(self.status_topic, self._status_payload("online"), qos=1, retain=True)
            await asyncio.sleep(STATUS_EVERY_S)

    # paho thread → event loop
    def _deliver(self, topic: str, payload: bytes) -> None:
        handler = self._commands.get(topic)
        if handler is None:
            handler = next((h for sub, h in self._commands.items() if mqtt.topic_matches_sub(sub, topic)), None)
        if handler is None:
            log.debug("MQTT: message on %s, which no handler wants; ignored", topic)
            return
        try:
            handler(topic, payload)
        except Exception:
            log.exception("MQTT: the handler of %s failed; the message is ignored", topic)

    def _became_connected(self) -> None:
        for topic, payload in self._machine_status.items():
            self._client.publish(topic, payload, qos=1, retain=True)
        self.replay.begin()
        self._status_dirty.set()
        self._pump.wake()

    # ------------------------------------------------------------------ status payload
    def _status_payload(self, state: str, *, final: bool = True) -> bytes:
        stats = self.outbox.stats
        status: dict[str, Any] = {"state": state, "agent": self.client_id, "version": __version__}
        status["since"] = time.time_ns()
        if final:  # the last will is set once, before any outbox is read: it carries no counts
            status["backlog"] = {"batches": stats.entries, "bytes": stats.bytes, "samples": stats.samples}
            status["dropped"] = {"batches": stats.dropped_batches, "samples": stats.dropped_samples}
            status["replay"] = self.replay.state()
        return json.dumps(status).encode()

    # ------------------------------------------------------------------ SessionHandler: paho's thread
    def on_publish(self, client: mqtt.Client, userdata: Any, mid: int, reason: ReasonCode, properties: Any) -> None:
        self._pump.puback(mid)

    def on_connect(self, client: mqtt.Client, userdata: Any, flags: Any, reason: ReasonCode, properties: Any) -> None:
        if reason.is_failure:
            self._log_down(describe_refusal(reason, self.config.username))
            return
        self.stats.connects += 1
        self.backoff.reset()
        self._connected.set()
        client.publish(self.status_topic, self._status_payload("online"), qos=1, retain=True)
        commands = list(self._commands)  # the event loop may add one meanwhile
        if commands:
            client.subscribe([(topic, 1) for topic in commands])
        if self._down_logged:
            log.info("MQTT: broker %s:%d reachable again; sending the backlog", self.config.host, self.config.port)
        else:
            log.info("MQTT: connected to %s:%d", self.config.host, self.config.port)
        self._down_logged = False
        self._session.call_in_loop(self._became_connected)

    def on_message(self, client: mqtt.Client, userdata: Any, message: mqtt.MQTTMessage) -> None:
        self._session.call_in_loop(self._deliver, message.topic, bytes(message.payload))

    def on_subscribe(
        self, client: mqtt.Client, userdata: Any, mid: int, reasons: list[ReasonCode], properties: Any
    ) -> None:
        if any(r.is_failure for r in reasons):
            log.warning(
                "MQTT: the broker refused a command subscription (%s) for %s, so commands (alert acknowledge) "
                "are not received. Fix: allow this client to read {prefix}/+/+/+/+/alerts/ack in the broker's ACL",
                ", ".join(str(r) for r in reasons),
                self.client_id,
            )

    def on_disconnect(
        self, client: mqtt.Client, userdata: Any, flags: Any, reason: ReasonCode, properties: Any
    ) -> None:
        self._connected.clear()
        if self.config.qos == 0:
            self._session.call_in_loop(self._pump.forget_unsent_qos0)
        if self._started and not self._closing:
            self._session.call_in_loop(self.replay.interrupt, f"the broker connection was lost ({reason})")
            self._log_down(f"disconnected ({reason})")
            self._next_retry()

    def on_connect_fail(self, client: mqtt.Client, userdata: Any) -> None:
        if not self._down_logged:
            self._log_down(diagnose_connect_failure(self.config))
        self._next_retry()

    def _next_retry(self) -> None:
        """Replace paho's plain doubling delay with a capped, jittered one for the coming wait."""
        self._session.retry_after(self.backoff.next_delay())

    def _log_down(self, why: str) -> None:
        if not self._down_logged:
            self._down_logged = True
            log.warning(
                "MQTT: broker %s:%d down: %s. Polling continues, batches wait in the outbox, "
                "retrying with backoff (up to %.0f s)",
                self.config.host,
                self.config.port,
                why,
                self.backoff.cap,
            )
