"""The ingest bridge's rig: a broker-side publisher, a dead-letter listener, configs, a running bridge.

The servers themselves come from tests/helpers/servers.py (fixtures in tests/conftest.py).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import threading
from collections.abc import AsyncIterator, Iterator
from typing import Any

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion

from edge_agent.core.origin import Origin
from edge_agent.core.samples import Batch, Sample
from edge_agent.delivery.config import InfluxConfig, MqttConfig
from edge_agent.delivery.influx_writer import InfluxWriter, make_writer
from edge_agent.delivery.payloads import encode_json
from edge_agent.ingest.bridge import IngestBridge
from edge_agent.ingest.config import IngestConfig
from tests.helpers.servers import InfluxDB1, Mosquitto, unique_name
from tests.helpers.telemetry import telemetry_points

WAIT = 15.0
T0 = 1_763_800_000_000_000_000


class Publisher:
    """A plain paho client that publishes QoS 1 and waits for the broker's PUBACK (the agent's side)."""

    def __init__(self, broker: Mosquitto) -> None:
        self.client = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=unique_name("pub"))
        self.client.connect(broker.host, broker.port, keepalive=10)
        self.client.loop_start()

    def publish(self, topic: str, payload: bytes) -> None:
        info = self.client.publish(topic, payload, qos=1)
        info.wait_for_publish(timeout=10)
        assert info.is_published(), f"broker did not acknowledge the publish to {topic}"

    async def apublish(self, topic: str, payload: bytes) -> None:
        await asyncio.to_thread(self.publish, topic, payload)

    def close(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()


@contextlib.contextmanager
def publishing(broker: Mosquitto) -> Iterator[Publisher]:
    """A ``Publisher`` for the duration of the block."""
    pub = Publisher(broker)
    try:
        yield pub
    finally:
        pub.close()


class DeadLetters:
    """Collects every message under ``{prefix}/_deadletter/#`` (QoS 1)."""

    def __init__(self, broker: Mosquitto, prefix: str) -> None:
        self.messages: list[tuple[str, dict[str, object]]] = []
        self._lock = threading.Lock()
        self._subscribed = threading.Event()
        self.client = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=unique_name("dl"))
        self.client.on_message = self._on_message
        self.client.on_subscribe = lambda *_: self._subscribed.set()
        self.client.connect(broker.host, broker.port, keepalive=10)
        self.client.subscribe(f"{prefix}/_deadletter/#", qos=1)
        self.client.loop_start()
        assert self._subscribed.wait(10), "the dead-letter listener could not subscribe"

    def _on_message(self, _client: mqtt.Client, _userdata: object, message: mqtt.MQTTMessage) -> None:
        with self._lock:
            self.messages.append((message.topic, json.loads(message.payload)))

    def received(self) -> list[tuple[str, dict[str, object]]]:
        with self._lock:
            return list(self.messages)

    def close(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()


def good(origin: Origin, index: int) -> bytes:
    t = T0 + index * 1_000_000
    return encode_json(Batch(origin.machine, (Sample("flow", float(index), t), Sample("count", index, t + 1))), origin)


async def count_points(influx: InfluxDB1, database: str) -> int:
    """How many telemetry points ``database`` holds, without blocking the loop."""
    return await asyncio.to_thread(telemetry_points, influx, database)


def mqtt_config(broker: Mosquitto, prefix: str) -> MqttConfig:
    return MqttConfig(host=broker.host, port=broker.port, topic_prefix=prefix, connect_timeout=5.0, keepalive=5.0)


def ingest_config(**overrides: object) -> IngestConfig:
    values: dict[str, object] = {"client_id": unique_name("ingest"), "flush_interval": 0.2}
    values.update(overrides)
    return IngestConfig.model_validate(values)


@contextlib.asynccontextmanager
async def running_bridge(
    mqtt_cfg: MqttConfig,
    ingest_cfg: IngestConfig,
    influx_cfg: InfluxConfig,
    **bridge_options: Any,
) -> AsyncIterator[IngestBridge]:
    """Run a bridge for the duration of the block; on exit stop it and check it stopped within 5 s."""
    writer: InfluxWriter = make_writer(influx_cfg)
    bridge = IngestBridge(mqtt_cfg, ingest_cfg, writer, **bridge_options)
    stop = asyncio.Event()
    task = asyncio.create_task(bridge.run(stop), name="bridge-under-test")
    try:
        async with asyncio.timeout(WAIT):
            await bridge.wait_ready()
        yield bridge
    finally:
        stop.set()
        try:
            async with asyncio.timeout(5.0):
                await task
        finally:
            task.cancel()
            await writer.close()
