"""Helpers for the ingest tests. The server fixtures come from tests/servers.py (loaded by tests/conftest.py)."""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from typing import Any

import paho.mqtt.client as mqtt
import pytest
from paho.mqtt.enums import CallbackAPIVersion

from edge_agent.delivery.config import InfluxConfig, MqttConfig
from edge_agent.delivery.influx_writer import InfluxWriter, make_writer
from edge_agent.ingest.bridge import IngestBridge
from edge_agent.ingest.config import IngestConfig
from tests.servers import Mosquitto, unique_name

WAIT = 15.0


async def wait_until(
    condition: Callable[[], bool | Awaitable[bool]], what: str, within: float = WAIT, interval: float = 0.05
) -> None:
    """Poll ``condition`` until true; fail naming ``what`` after ``within`` seconds."""
    deadline = time.monotonic() + within
    while True:
        result = condition()
        if not isinstance(result, bool):
            result = await result
        if result:
            return
        if time.monotonic() > deadline:
            pytest.fail(f"timed out after {within:.0f} s waiting for {what}")
        await asyncio.sleep(interval)


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


@pytest.fixture
def publisher(mosquitto: Mosquitto) -> Iterator[Publisher]:
    pub = Publisher(mosquitto)
    try:
        yield pub
    finally:
        pub.close()


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
