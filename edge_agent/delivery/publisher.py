"""MQTT publisher sink: batches go through the durable outbox, then out with QoS 1; retained status.

The path of one batch (docs/delivery.md has the whole contract):

1. ``submit`` encodes the batch and appends it to the outbox (SQLite, in the outbox's own thread).
   Once ``submit`` returns, the batch survives a ``kill -9`` of the agent.
2. The pump task reads the outbox in order, in chunks, and hands entries to paho as long as fewer
   than ``outbox.max_in_flight`` messages await their PUBACK. paho sends them from its own network
   thread, so the event loop never waits on the broker.
3. paho's ``on_publish`` (the PUBACK; with ``mqtt.qos: 0`` merely "written to the socket", which
   gives up the guarantee) is passed to the event loop with ``call_soon_threadsafe``; the
   ack task deletes acknowledged entries in batches.

A backlog left by an outage (or by a previous run of the agent) is simply the front of the outbox:
it drains in order, a window of messages at a time, while new batches keep being appended behind
it, so polling never stops and nothing overtakes. Its replay is reported (``edge_agent.delivery.replay``:
a start line, progress at most every 10 s, an end line; the same figures in the status payload).
While the broker is away paho keeps the in-flight window in memory and re-sends it after
reconnecting (DUP flag); everything else waits on disk.

The session is persistent (MQTT 3.1.1, clean session off, fixed client id). Reconnects use capped,
jittered backoff (``edge_agent.core.backoff``): paho's own delay is replaced before each wait, so a
hundred agents restarted together do not reconnect in step.

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
import collections
import contextlib
import json
import logging
import socket
import sqlite3
import ssl
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion
from paho.mqtt.reasoncodes import ReasonCode

from edge_agent import __version__
from edge_agent.core.backoff import Backoff
from edge_agent.core.errors import ConfigError
from edge_agent.core.origin import Origin
from edge_agent.core.samples import Batch
from edge_agent.delivery.config import MqttConfig, OutboxConfig
from edge_agent.delivery.outbox import Outbox, default_outbox_path
from edge_agent.delivery.payloads import encode_json, encode_line_protocol
from edge_agent.delivery.replay import BacklogReplay

log = logging.getLogger(__name__)

READ_CHUNK = 500  # outbox entries read per query while draining
ACK_FLUSH_S = 0.05  # acknowledged entries are deleted in batches at most this often
STATUS_EVERY_S = 5.0  # the retained agent status (with the backlog) is refreshed this often while it changes
STORAGE_RETRY_S = 1.0  # after a failed read or delete of the outbox
CLOSE_GRACE_S = 1.0  # close() waits this long for PUBACKs, and again for the offline status (runtime allows 3 s)
_PROBE_TIMEOUT_S = 5.0


CommandHandler = Callable[[str, bytes], None]
"""``handler(topic, payload)``, called on the event loop for each message on a subscribed topic."""


@dataclass
class PublisherStats:
    """Counters for the status page, metrics and tests (this process only).

    ``submitted`` batches appended to the outbox; ``published`` PUBACKs received for telemetry;
    ``sent`` telemetry messages handed to paho (a re-send after a reconnect counts once);
    ``connects`` successful connections; ``dropped`` batches the outbox could not keep.
    """

    submitted: int = 0
    sent: int = 0
    published: int = 0
    connects: int = 0
    dropped: int = 0


def agent_status_topic(config: MqttConfig, site: str, client_id: str) -> str:
    """The retained topic where the agent says online / offline."""
    return f"{config.topic_prefix}/{site}/_agent/{client_id}/status"


class MqttPublisher:
    """Publishes batches through the outbox to an MQTT broker; never blocks polling, never raises for a down broker."""

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
        self._in_flight: dict[int, int] = {}  # paho mid -> outbox seq
        self._handed_upto = 0
        self._acked: list[int] = []
        self._puback_mids: collections.deque[int] = collections.deque()  # appended in paho's thread
        self._puback_scheduled = False
        self._storage_error_logged = False
        self._machine_status: dict[str, bytes] = {}  # topic -> last retained payload
        self._commands: dict[str, CommandHandler] = {}  # subscribed topic -> handler (on the event loop)
        self._wake_pump = asyncio.Event()
        self._wake_acks = asyncio.Event()
        self._all_acked = asyncio.Event()  # set on every ack; close() re-checks what is left
        self._status_dirty = asyncio.Event()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._tasks: list[asyncio.Task[None]] = []
        self._started = False
        self._closing = False
        self._client = self._make_client()

    # ------------------------------------------------------------------ set-up
    def _make_client(self) -> mqtt.Client:
        config = self.config
        client = mqtt.Client(
            callback_api_version=CallbackAPIVersion.VERSION2,
            client_id=self.client_id,
            protocol=mqtt.MQTTv311,
            clean_session=False,
        )
        # The outbox bounds what paho holds: the in-flight window, plus a few status messages.
        client.max_inflight_messages_set(self.max_in_flight)
        client.max_queued_messages_set(max(config.max_queued_messages, self.max_in_flight + 100))
        client.reconnect_delay_set(min_delay=1, max_delay=30)
        client.connect_timeout = config.connect_timeout
        client.will_set(self.status_topic, self._status_payload("offline", final=False), qos=1, retain=True)
        if config.username is not None:
            password = config.password.get_secret_value() if config.password else None
            client.username_pw_set(config.username, password)
        if config.tls is not None:
            client.tls_set_context(self._tls_context())
            client.tls_insecure_set(config.tls.insecure_skip_hostname_check)
        client.on_connect = self._on_connect
        client.on_disconnect = self._on_disconnect
        client.on_connect_fail = self._on_connect_fail
        client.on_publish = self._on_publish
        client.on_message = self._on_message
        client.on_subscribe = self._on_subscribe
        return client

    def _tls_context(self) -> ssl.SSLContext:
        tls = self.config.tls
        assert tls is not None
        try:
            context = ssl.create_default_context(cafile=tls.ca_file)
            if tls.cert_file:
                context.load_cert_chain(tls.cert_file, tls.key_file)
        except (OSError, ssl.SSLError) as exc:
            raise ConfigError(
                "configuration",
                [f"mqtt.tls: cannot load the certificates: {exc}. Fix: check ca_file, cert_file and key_file"],
            ) from exc
        if tls.insecure_skip_hostname_check:
            context.check_hostname = False
        return context

    @property
    def connected(self) -> bool:
        """Whether the broker session is up right now."""
        return self._connected.is_set()

    @property
    def in_flight(self) -> int:
        """Telemetry messages handed to paho and not yet acknowledged."""
        return len(self._in_flight)

    # ------------------------------------------------------------------ Sink
    async def start(self) -> None:
        """Open the outbox, start connecting in paho's thread; returns at once even if the broker is down."""
        self._loop = asyncio.get_running_loop()
        await self.outbox.open()
        self._client.connect_async(self.config.host, self.config.port, keepalive=round(self.config.keepalive))
        self._client.loop_start()
        self._started = True
        self._tasks = [
            asyncio.create_task(self._pump(), name="mqtt:pump"),
            asyncio.create_task(self._remove_acked(), name="mqtt:acks"),
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
        try:
            seq = await self.outbox.append(topic, payload, len(batch.samples))
        except RuntimeError as exc:  # outbox closed: the agent is shutting down
            log.debug("MQTT: batch of %s not stored: %s", origin.machine, exc)
            seq = None
        if seq is None:
            self.stats.dropped += 1
        self._wake_pump.set()
        self._status_dirty.set()

    async def submit_message(self, origin: Origin, kind: str, payload: bytes, *, retain: bool = False) -> None:
        """Send any other message of a machine (e.g. ``kind="alerts"``) through the outbox, QoS 1, in order.

        For events that must not be lost either (alert raised / cleared, anomaly scores): same
        durability, same bounds, counted as batches with 0 samples. With ``retain`` the broker keeps
        the message as the topic's current state; because the outbox sends in order, the last one
        retained is the newest (alert events use it: a late subscriber sees the open alert, or the
        ``cleared`` event that closed the last one). The machine's up/down status is retained by
        ``machine_state_changed`` instead (it is not worth a disk write).
        """
        try:
            seq = await self.outbox.append(origin.topic(self.config.topic_prefix, kind), payload, 0, retain=retain)
        except RuntimeError as exc:
            log.debug("MQTT: %s message of %s not stored: %s", kind, origin.machine, exc)
            seq = None
        if seq is None:
            self.stats.dropped += 1
        self._wake_pump.set()
        self._status_dirty.set()

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
                    while self._in_flight and self.connected:
                        self._all_acked.clear()
                        await self._all_acked.wait()
            for task in self._tasks:
                task.cancel()
            await asyncio.gather(*self._tasks, return_exceptions=True)
            await self._flush_acks()
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
            await asyncio.to_thread(self._stop_network)
        log.info(
            "MQTT: stopped; %d batch(es) wait in the outbox for the next start, %d dropped since it was created",
            self.outbox.stats.entries,
            self.outbox.stats.dropped_batches,
        )

    def _stop_network(self) -> None:
        self._client.disconnect()
        self._client.loop_stop()

    # ------------------------------------------------------------------ event-loop tasks
    async def _pump(self) -> None:
        """Hand outbox entries to paho, in order, while the in-flight window has room."""
        while True:
            await self._wake_pump.wait()
            self._wake_pump.clear()
            while self.connected and len(self._in_flight) < self.max_in_flight:
                room = self.max_in_flight - len(self._in_flight)
                try:
                    entries = await self.outbox.read_after(self._handed_upto, min(room, READ_CHUNK), pin=True)
                except sqlite3.Error as exc:
                    self._report_storage_error(exc)
                    await asyncio.sleep(STORAGE_RETRY_S)
                    continue
                self._storage_error_logged = False
                if not entries:
                    break
                for entry in entries:
                    info = self._client.publish(entry.topic, entry.payload, qos=self.config.qos, retain=entry.retain)
                    if info.rc not in (mqtt.MQTT_ERR_SUCCESS, mqtt.MQTT_ERR_NO_CONN):
                        log.debug("MQTT: paho refused a publish (%s); retrying later", mqtt.error_string(info.rc))
                        break
                    self._in_flight[info.mid] = entry.seq
                    self._handed_upto = entry.seq
                    self.stats.sent += 1
                else:
                    continue
                break

    async def _remove_acked(self) -> None:
        """Delete acknowledged entries from the outbox, many per transaction."""
        while True:
            await self._wake_acks.wait()
            await asyncio.sleep(ACK_FLUSH_S)  # let acks gather: one delete for many of them
            self._wake_acks.clear()
            await self._flush_acks()

    async def _flush_acks(self) -> None:
        acked, self._acked = self._acked, []
        if not acked:
            return
        try:
            await self.outbox.remove(acked)
        except RuntimeError:
            return  # outbox already closed: the entries are sent again next start, harmlessly
        except sqlite3.Error as exc:
            # The disk failed under us: keep the acks and try again; until then they would only be re-sent.
            self._acked = acked + self._acked
            self._report_storage_error(exc)
            await asyncio.sleep(STORAGE_RETRY_S)
            self._wake_acks.set()
            return
        self.replay.check()
        self._status_dirty.set()

    def _report_storage_error(self, exc: sqlite3.Error) -> None:
        if not self._storage_error_logged:
            self._storage_error_logged = True
            log.error(
                "MQTT: the outbox %s cannot be read or updated (%s); retrying every %.0f s. Fix: check the disk",
                self.outbox.path,
                exc,
                STORAGE_RETRY_S,
            )

    async def _publish_status_periodically(self) -> None:
        """Keep the retained agent status (backlog, drops) current, at most every few seconds."""
        while True:
            await self._status_dirty.wait()
            self._status_dirty.clear()
            if self.connected:
                self._client.publish(self.status_topic, self._status_payload("online"), qos=1, retain=True)
            await asyncio.sleep(STATUS_EVERY_S)

    # paho thread → event loop
    def _take_pubacks(self) -> None:
        self._puback_scheduled = False  # first: a PUBACK arriving from now on schedules another call
        taken = len(self._acked)
        while self._puback_mids:
            seq = self._in_flight.pop(self._puback_mids.popleft(), None)
            if seq is None:
                continue  # a status message
            self.stats.published += 1
            self._acked.append(seq)
        self.replay.delivered(self._acked[taken:])  # counted on arrival: a cut replay says how far it really got
        self._all_acked.set()
        self._wake_acks.set()
        self._wake_pump.set()

    def _forget_unsent_qos0(self) -> None:
        """QoS 0: paho drops what it had not written when the connection goes and never reports it.

        Those entries are still in the outbox; start again from its front so they are sent anew.
        """
        self._in_flight.clear()
        self._handed_upto = 0
        self.outbox.pinned_upto = 0

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
        self._wake_pump.set()

    def _call_in_loop(self, callback: Any, *args: Any) -> None:
        loop = self._loop
        if loop is not None and not loop.is_closed():
            with contextlib.suppress(RuntimeError):  # loop closed between the check and the call
                loop.call_soon_threadsafe(callback, *args)

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

    # ------------------------------------------------------------------ paho callbacks (paho's thread)
    def _on_publish(self, client: mqtt.Client, userdata: Any, mid: int, reason: ReasonCode, properties: Any) -> None:
        # One wake-up of the event loop per burst of PUBACKs, not one per message: while draining a
        # backlog thousands arrive per second, and each call_soon_threadsafe costs a pipe write.
        self._puback_mids.append(mid)
        if not self._puback_scheduled:
            self._puback_scheduled = True
            self._call_in_loop(self._take_pubacks)

    def _on_connect(self, client: mqtt.Client, userdata: Any, flags: Any, reason: ReasonCode, properties: Any) -> None:
        if reason.is_failure:
            self._log_down(self._refusal(reason))
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
        self._call_in_loop(self._became_connected)

    def _on_message(self, client: mqtt.Client, userdata: Any, message: mqtt.MQTTMessage) -> None:
        self._call_in_loop(self._deliver, message.topic, bytes(message.payload))

    def _on_subscribe(
        self, client: mqtt.Client, userdata: Any, mid: int, reasons: list[ReasonCode], properties: Any
    ) -> None:
        if any(r.is_failure for r in reasons):
            log.warning(
                "MQTT: the broker refused a command subscription (%s) for %s, so commands (alert acknowledge) "
                "are not received. Fix: allow this client to read {prefix}/+/+/+/+/alerts/ack in the broker's ACL",
                ", ".join(str(r) for r in reasons),
                self.client_id,
            )

    def _on_disconnect(
        self, client: mqtt.Client, userdata: Any, flags: Any, reason: ReasonCode, properties: Any
    ) -> None:
        self._connected.clear()
        if self.config.qos == 0:
            self._call_in_loop(self._forget_unsent_qos0)
        if self._started and not self._closing:
            self._call_in_loop(self.replay.interrupt, f"the broker connection was lost ({reason})")
            self._log_down(f"disconnected ({reason})")
            self._next_retry()

    def _on_connect_fail(self, client: mqtt.Client, userdata: Any) -> None:
        if not self._down_logged:
            self._log_down(self._diagnose())
        self._next_retry()

    def _next_retry(self) -> None:
        """Replace paho's plain doubling delay with a capped, jittered one for the coming wait."""
        delay = self.backoff.next_delay()
        self._client.reconnect_delay_set(min_delay=max(delay, 0.1), max_delay=max(delay, 0.1))  # type: ignore[arg-type]

    def _refusal(self, reason: ReasonCode) -> str:
        text = str(reason)
        user = self.config.username
        if "password" in text.lower() or "authori" in text.lower():
            who = f"user {user!r}" if user else "an anonymous client"
            return (
                f"the broker refused the login of {who} ({text}). Fix: check mqtt.username and mqtt.password, "
                "and the broker's ACL for this client id"
            )
        return f"the broker refused the connection ({text})"

    def _diagnose(self) -> str:
        """Why a connection attempt failed, found by repeating its steps (paho does not say)."""
        host, port = self.config.host, self.config.port
        try:
            sock = socket.create_connection((host, port), timeout=_PROBE_TIMEOUT_S)
        except OSError as exc:
            return f"cannot reach it ({exc.strerror or exc})"
        with sock:
            if self.config.tls is None:
                return "the connection opened but the MQTT handshake did not complete"
            try:
                context = self._tls_context()
                with context.wrap_socket(sock, server_hostname=host):
                    return "the TLS handshake succeeded on a probe; the MQTT connect failed"
            except ssl.SSLCertVerificationError as exc:
                message = exc.verify_message or str(exc)
                if "hostname" in message.lower() or "ip address mismatch" in message.lower():
                    return (
                        f"TLS: the broker's certificate is not valid for the name {host!r} ({message}). "
                        "Fix: set mqtt.host to a name the certificate lists, or reissue the certificate"
                    )
                return (
                    f"TLS: the broker's certificate is not trusted ({message}). "
                    "Fix: set mqtt.tls.ca_file to the CA that signed it"
                )
            except (ssl.SSLError, OSError, ConfigError) as exc:
                return f"TLS handshake failed ({exc}). Fix: check that the broker port speaks TLS and mqtt.tls"

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
