"""MQTT publisher sink (paho-mqtt): telemetry per poll, retained status, last will.

paho runs its network loop in its own thread (``loop_start``); ``publish`` only enqueues, so
the event loop never waits on the broker. paho reconnects by itself with a capped delay. While
the broker is away paho keeps up to ``mqtt.max_queued_messages`` QoS 1 messages in memory;
beyond that a batch is dropped and counted (the durable outbox replaces this in a later release).

Topics (``prefix`` = ``mqtt.topic_prefix``):
  ``{prefix}/{site}/{area}/{line}/{machine}/telemetry``  one message per poll, QoS 1
  ``{prefix}/{site}/{area}/{line}/{machine}/status``     retained: machine up / down
  ``{prefix}/{site}/_agent/{client_id}/status``           retained: agent online / offline (last will)
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import ssl
import threading
import time
from dataclasses import dataclass
from typing import Any

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion
from paho.mqtt.reasoncodes import ReasonCode

from edge_agent import __version__
from edge_agent.config import MqttConfig
from edge_agent.payloads import Origin, encode_json, encode_line_protocol
from edge_agent.samples import Batch

log = logging.getLogger(__name__)


@dataclass
class PublisherStats:
    """Counters for the status page and metrics."""

    published: int = 0
    dropped: int = 0
    connects: int = 0


def agent_status_topic(config: MqttConfig, site: str, client_id: str) -> str:
    """The retained topic where the agent says online / offline."""
    return f"{config.topic_prefix}/{site}/_agent/{client_id}/status"


class MqttPublisher:
    """Publishes batches to an MQTT broker; never blocks the poll loop, never raises for a down broker."""

    name = "mqtt"

    def __init__(self, config: MqttConfig, site: str, client_id: str | None = None) -> None:
        self.config = config
        self.site = site
        self.client_id = client_id or config.client_id or f"edge-agent-{site}"
        self.status_topic = agent_status_topic(config, site, self.client_id)
        self.stats = PublisherStats()
        self._connected = threading.Event()
        self._dropping = False
        self._down_logged = False
        self._client = mqtt.Client(
            callback_api_version=CallbackAPIVersion.VERSION2,
            client_id=self.client_id,
            protocol=mqtt.MQTTv311,
            clean_session=True,
        )
        self._client.max_queued_messages_set(config.max_queued_messages)
        self._client.reconnect_delay_set(min_delay=1, max_delay=30)
        self._client.will_set(self.status_topic, self._status_payload("offline"), qos=1, retain=True)
        if config.username is not None:
            password = config.password.get_secret_value() if config.password else None
            self._client.username_pw_set(config.username, password)
        if config.tls is not None:
            self._client.tls_set(
                ca_certs=config.tls.ca_file,
                certfile=config.tls.cert_file,
                keyfile=config.tls.key_file,
                cert_reqs=ssl.CERT_REQUIRED,
            )
            self._client.tls_insecure_set(config.tls.insecure_skip_hostname_check)
        self._client.on_connect = self._on_connect
        self._client.on_disconnect = self._on_disconnect
        self._client.on_connect_fail = self._on_connect_fail
        self._started = False

    @property
    def connected(self) -> bool:
        """Whether the broker session is up right now."""
        return self._connected.is_set()

    async def start(self) -> None:
        """Start connecting in paho's thread; returns at once even if the broker is down."""
        self._client.connect_async(self.config.host, self.config.port, keepalive=int(self.config.keepalive))
        self._client.loop_start()
        self._started = True
        log.info("MQTT: connecting to %s:%d as %s", self.config.host, self.config.port, self.client_id)

    async def submit(self, batch: Batch, origin: Origin) -> None:
        """Enqueue one poll's batch for publishing (QoS per config)."""
        encode = encode_json if self.config.payload_format == "json" else encode_line_protocol
        info = self._client.publish(
            origin.topic(self.config.topic_prefix, "telemetry"), encode(batch, origin), qos=self.config.qos
        )
        if info.rc == mqtt.MQTT_ERR_SUCCESS or (info.rc == mqtt.MQTT_ERR_NO_CONN and self.config.qos > 0):
            self.stats.published += 1
            if self._dropping:
                self._dropping = False
                log.info("MQTT: publishing again; %d batch(es) were dropped in total", self.stats.dropped)
            return
        self.stats.dropped += 1
        if not self._dropping:
            self._dropping = True
            log.error(
                "MQTT: dropping telemetry (%s): the broker at %s:%d is unreachable and the in-memory queue of %d "
                "messages is full. Data is being lost until the broker is back.",
                mqtt.error_string(info.rc),
                self.config.host,
                self.config.port,
                self.config.max_queued_messages,
            )

    def machine_state_changed(self, origin: Origin, state: str, reason: str | None) -> None:
        """Publish the retained machine status on transitions."""
        payload = json.dumps({"state": state, "reason": reason, "since": time.time_ns()})
        self._client.publish(origin.topic(self.config.topic_prefix, "status"), payload, qos=1, retain=True)

    async def close(self) -> None:
        """Say offline (retained), disconnect and stop paho's thread."""
        if not self._started:
            return
        self._started = False
        if self.connected:
            info = self._client.publish(self.status_topic, self._status_payload("offline"), qos=1, retain=True)
            with contextlib.suppress(RuntimeError, ValueError):
                await asyncio.to_thread(info.wait_for_publish, 2.0)
        self._client.disconnect()
        self._client.loop_stop()

    def _status_payload(self, state: str) -> str:
        return json.dumps({"state": state, "agent": self.client_id, "version": __version__, "since": time.time_ns()})

    def _on_connect(self, client: mqtt.Client, userdata: Any, flags: Any, reason: ReasonCode, properties: Any) -> None:
        if reason.is_failure:
            self._log_down(f"broker refused the connection: {reason}")
            return
        self.stats.connects += 1
        self._connected.set()
        client.publish(self.status_topic, self._status_payload("online"), qos=1, retain=True)
        if self._down_logged:
            log.info("MQTT: broker %s:%d reachable again", self.config.host, self.config.port)
        else:
            log.info("MQTT: connected to %s:%d", self.config.host, self.config.port)
        self._down_logged = False

    def _on_disconnect(
        self, client: mqtt.Client, userdata: Any, flags: Any, reason: ReasonCode, properties: Any
    ) -> None:
        self._connected.clear()
        if self._started:
            self._log_down(f"disconnected ({reason})")

    def _on_connect_fail(self, client: mqtt.Client, userdata: Any) -> None:
        self._log_down("cannot connect")

    def _log_down(self, why: str) -> None:
        if not self._down_logged:
            self._down_logged = True
            log.warning(
                "MQTT: broker %s:%d down: %s; polling continues and paho retries every 1-30 s",
                self.config.host,
                self.config.port,
                why,
            )
