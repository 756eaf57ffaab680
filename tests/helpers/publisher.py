"""The agent's MQTT publisher on a test broker, started with a reconnect backoff fast enough for tests."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator
from pathlib import Path

from edge_agent.delivery.config import MqttConfig, OutboxConfig
from edge_agent.delivery.publisher import MqttPublisher
from tests.helpers.servers import Mosquitto, unique_name


@contextlib.asynccontextmanager
async def running_publisher(
    broker: Mosquitto, prefix: str, outbox_path: Path, *, max_in_flight: int, replay_every_s: float | None = None
) -> AsyncIterator[MqttPublisher]:
    """A started ``MqttPublisher`` for site ``s`` publishing under ``prefix``, closed afterwards."""
    config = MqttConfig(host=broker.host, port=broker.port, topic_prefix=prefix, keepalive=5)
    publisher = MqttPublisher(
        config,
        "s",
        client_id=unique_name("agent"),
        outbox=OutboxConfig(path=str(outbox_path), max_in_flight=max_in_flight),
    )
    publisher.backoff.initial, publisher.backoff.cap = 0.1, 0.5
    if replay_every_s is not None:
        publisher.replay.every_s = replay_every_s
    await publisher.start()
    try:
        yield publisher
    finally:
        await publisher.close()
