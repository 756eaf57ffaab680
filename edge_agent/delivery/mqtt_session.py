"""One paho client per MQTT session, set up from the ``mqtt`` section the same way everywhere.

The publisher, the ingest bridge and ``edge-agent doctor`` all talk to the broker the config
names. They differ in what they do with the session (publish through the outbox, read and ack by
hand, one round trip), not in how they reach it: the client id, the protocol version, the login,
TLS, keepalive, the connect timeout and the reconnect delays all come from ``MqttConfig`` here,
so a broker that accepts the doctor accepts the agent and the bridge too.

paho runs its network loop in a thread of its own. Its callbacks must not touch the event loop's
objects; ``call_in_loop`` passes a call over (``call_soon_threadsafe``) and is harmless once the
loop is gone, which happens while the agent shuts down.
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
import ssl
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Literal, Protocol

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties
from paho.mqtt.reasoncodes import ReasonCode

from edge_agent.core.errors import ConfigError
from edge_agent.delivery.config import MqttConfig, TlsConfig

__all__ = [
    "SESSION_NEVER_EXPIRES",
    "STOP_TIMEOUT_S",
    "MqttSession",
    "SessionHandler",
    "Will",
    "call_in_loop",
    "describe_refusal",
    "diagnose_connect_failure",
    "tls_context",
]

SESSION_NEVER_EXPIRES = 0xFFFFFFFF
"""MQTT 5 session expiry interval meaning "keep the session for ever"."""
RECONNECT_MIN_S = 1
RECONNECT_MAX_S = 30
STOP_TIMEOUT_S = 2.0
"""How long stopping paho's network thread may take before the caller goes on without it."""
PROBE_TIMEOUT_S = 5.0


@dataclass(frozen=True)
class Will:
    """The message the broker publishes for the client when its connection dies without a goodbye."""

    topic: str
    payload: bytes
    qos: int = 1
    retain: bool = True


class SessionHandler(Protocol):
    """What the owner of a session does on paho's events; every method runs in paho's network thread.

    They must return quickly and hand anything touching the event loop over with ``call_in_loop``.
    """

    def on_connect(
        self,
        client: mqtt.Client,
        userdata: Any,
        flags: mqtt.ConnectFlags,
        reason: ReasonCode,
        properties: Properties | None,
        /,
    ) -> None:
        """The broker answered the CONNECT (accepted, or refused: ``reason.is_failure``)."""
        ...

    def on_connect_fail(self, client: mqtt.Client, userdata: Any, /) -> None:
        """A connection attempt failed before any answer (unreachable, TLS, timeout); paho retries."""
        ...

    def on_disconnect(
        self,
        client: mqtt.Client,
        userdata: Any,
        flags: mqtt.DisconnectFlags,
        reason: ReasonCode,
        properties: Properties | None,
        /,
    ) -> None:
        """The connection ended (lost, or closed by us); paho reconnects unless it was stopped."""
        ...

    def on_subscribe(
        self, client: mqtt.Client, userdata: Any, mid: int, reasons: list[ReasonCode], properties: Properties | None, /
    ) -> None:
        """The broker answered a SUBSCRIBE, one reason per topic."""
        ...

    def on_message(self, client: mqtt.Client, userdata: Any, message: mqtt.MQTTMessage, /) -> None:
        """A message arrived on a subscribed topic."""
        ...

    def on_publish(
        self, client: mqtt.Client, userdata: Any, mid: int, reason: ReasonCode, properties: Properties | None, /
    ) -> None:
        """A message of ours was acknowledged (QoS 1: PUBACK; QoS 0: written to the socket)."""
        ...


def call_in_loop(loop: asyncio.AbstractEventLoop | None, callback: Callable[..., object], *args: Any) -> None:
    """From paho's thread: run ``callback(*args)`` on ``loop`` soon; dropped when the loop is closed or not set."""
    if loop is not None and not loop.is_closed():
        with contextlib.suppress(RuntimeError):  # loop closed between the check and the call
            loop.call_soon_threadsafe(callback, *args)


def tls_context(tls: TlsConfig) -> ssl.SSLContext:
    """The TLS context of the ``mqtt.tls`` section; a file that cannot be loaded is a ``ConfigError``."""
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


class MqttSession:
    """A paho client for ``config``, whose events go to ``handler``; the owner starts and stops it.

    Without a handler the owner sets paho's callbacks on ``client`` itself.

    ``persistent``: the broker keeps the session (subscriptions, queued QoS 1 messages) while the
    client is away; with MQTT 3.1.1 that is clean session off, with MQTT 5 clean start off and a
    session that never expires. ``receive_maximum`` (MQTT 5) is the number of unacknowledged
    messages the broker may send at once. ``max_inflight``/``max_queued`` bound what paho itself
    holds for sending (paho's defaults when None).
    """

    def __init__(
        self,
        config: MqttConfig,
        client_id: str,
        handler: SessionHandler | None = None,
        *,
        protocol: Literal[3, 5] = 3,
        persistent: bool = True,
        manual_ack: bool = False,
        will: Will | None = None,
        receive_maximum: int | None = None,
        max_inflight: int | None = None,
        max_queued: int | None = None,
    ) -> None:
        self.config = config
        self.client_id = client_id
        self.protocol = protocol
        self.persistent = persistent
        self.receive_maximum = receive_maximum
        self.loop: asyncio.AbstractEventLoop | None = None
        if protocol == 5:
            client = mqtt.Client(
                CallbackAPIVersion.VERSION2, client_id=client_id, protocol=mqtt.MQTTv5, manual_ack=manual_ack
            )
        else:
            client = mqtt.Client(
                CallbackAPIVersion.VERSION2,
                client_id=client_id,
                protocol=mqtt.MQTTv311,
                clean_session=not persistent,
                manual_ack=manual_ack,
            )
        if max_inflight is not None:
            client.max_inflight_messages_set(max_inflight)
        if max_queued is not None:
            client.max_queued_messages_set(max_queued)
        client.reconnect_delay_set(min_delay=RECONNECT_MIN_S, max_delay=RECONNECT_MAX_S)
        client.connect_timeout = config.connect_timeout
        if will is not None:
            client.will_set(will.topic, will.payload, qos=will.qos, retain=will.retain)
        if config.username is not None:
            password = config.password.get_secret_value() if config.password else None
            client.username_pw_set(config.username, password)
        if config.tls is not None:
            client.tls_set_context(tls_context(config.tls))
            client.tls_insecure_set(config.tls.insecure_skip_hostname_check)
        if handler is not None:
            client.on_connect = handler.on_connect
            client.on_connect_fail = handler.on_connect_fail
            client.on_disconnect = handler.on_disconnect
            client.on_subscribe = handler.on_subscribe
            client.on_message = handler.on_message
            client.on_publish = handler.on_publish
        self.client = client

    def retry_after(self, delay: float) -> None:
        """Make paho's coming reconnect wait ``delay`` seconds (at least 0.1), in place of its own doubling."""
        delay = max(delay, 0.1)
        self.client.reconnect_delay_set(min_delay=delay, max_delay=delay)  # type: ignore[arg-type]

    def start(self) -> None:
        """Start connecting in paho's thread and return at once (no network I/O here); paho reconnects.

        Called on the event loop, which ``call_in_loop`` then hands calls to.
        """
        self.loop = asyncio.get_running_loop()
        keepalive = round(self.config.keepalive)
        if self.protocol == 5:
            self.client.connect_async(
                self.config.host,
                self.config.port,
                keepalive=keepalive,
                clean_start=not self.persistent,
                properties=self._connect_properties(),
            )
        else:
            self.client.connect_async(self.config.host, self.config.port, keepalive=keepalive)
        self.client.loop_start()

    def connect(self) -> None:
        """Connect now, blocking up to ``mqtt.connect_timeout``, then start paho's thread (not on the event loop).

        Raises ``ssl.SSLError`` or ``OSError`` when the broker cannot be reached or the TLS
        handshake fails; a refused login arrives in ``on_connect``.
        """
        self.client.connect(self.config.host, self.config.port, keepalive=round(self.config.keepalive))
        self.client.loop_start()

    def call_in_loop(self, callback: Callable[..., object], *args: Any) -> None:
        """From paho's thread: run ``callback(*args)`` on the event loop that started the session."""
        call_in_loop(self.loop, callback, *args)

    def stop_blocking(self) -> None:
        """Disconnect and stop paho's thread (blocks; in a worker thread when called from the event loop)."""
        self.client.disconnect()
        self.client.loop_stop()

    async def stop(self) -> bool:
        """Disconnect and stop paho's thread off the event loop; False when that took over ``STOP_TIMEOUT_S``."""
        try:
            async with asyncio.timeout(STOP_TIMEOUT_S):
                await asyncio.to_thread(self.stop_blocking)
        except TimeoutError:
            return False
        return True

    def _connect_properties(self) -> Properties:
        properties = Properties(PacketTypes.CONNECT)  # type: ignore[no-untyped-call]
        if self.persistent:
            properties.SessionExpiryInterval = SESSION_NEVER_EXPIRES
        if self.receive_maximum is not None:
            properties.ReceiveMaximum = self.receive_maximum
        return properties


def describe_refusal(reason: ReasonCode, username: str | None) -> str:
    """A CONNACK refusal in words, with the fix for a refused login (the password is never echoed)."""
    text = str(reason)
    if "password" in text.lower() or "authori" in text.lower():
        who = f"user {username!r}" if username else "an anonymous client"
        return (
            f"the broker refused the login of {who} ({text}). Fix: check mqtt.username and mqtt.password, "
            "and the broker's ACL for this client id"
        )
    return f"the broker refused the connection ({text})"


def diagnose_connect_failure(config: MqttConfig) -> str:
    """Why a connection attempt failed, found by repeating its steps (paho does not say). Blocks up to a few seconds."""
    host, port = config.host, config.port
    try:
        sock = socket.create_connection((host, port), timeout=PROBE_TIMEOUT_S)
    except OSError as exc:
        return f"cannot reach it ({exc.strerror or exc})"
    with sock:
        if config.tls is None:
            return "the connection opened but the MQTT handshake did not complete"
        try:
            context = tls_context(config.tls)
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
