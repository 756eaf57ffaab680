"""The publisher's command subscription survives a broker that lost every session.

A persistent session normally keeps subscriptions across a broker restart; a broker whose
store was lost (a new container, a deleted volume) does not. The publisher subscribes again on
every connect, so commands reach it either way.
"""

from __future__ import annotations

import asyncio
from pathlib import Path

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion

from edge_agent.core.origin import Origin
from edge_agent.delivery.config import MqttConfig, OutboxConfig
from edge_agent.delivery.publisher import MqttPublisher
from tests.helpers.servers import Mosquitto, unique_name
from tests.helpers.waiting import wait_until

ORIGIN = Origin("s", "a", "l", "pump-1")


async def test_commands_arrive_after_the_broker_forgot_the_session(fresh_mosquitto: Mosquitto, tmp_path: Path) -> None:
    prefix = unique_name("cmd")
    config = MqttConfig(host=fresh_mosquitto.host, port=fresh_mosquitto.port, topic_prefix=prefix, keepalive=5)
    pub = MqttPublisher(config, "s", client_id=unique_name("agent"), outbox=OutboxConfig(path=str(tmp_path / "o.db")))
    pub.backoff.initial, pub.backoff.cap = 0.1, 0.5
    got: list[bytes] = []
    topic = ORIGIN.topic(prefix, "alerts/ack")
    pub.subscribe(topic, lambda _t, payload: got.append(payload))
    sender = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=unique_name("sender"))
    sender.reconnect_delay_set(1, 2)
    sender.connect(fresh_mosquitto.host, fresh_mosquitto.port, keepalive=5)
    sender.loop_start()
    await pub.start()
    try:

        def send_until_received(body: bytes) -> bool:
            if body in got:
                return True
            sender.publish(topic, body, qos=1)
            return False

        await wait_until(lambda: send_until_received(b"first"), 15, "a command before the restart", interval=0.3)

        await asyncio.to_thread(fresh_mosquitto.stop)
        for stored in fresh_mosquitto.directory.glob("*.db"):
            stored.unlink()  # the broker forgets every session and subscription
        await asyncio.to_thread(fresh_mosquitto.start)
        await wait_until(lambda: pub.stats.connects >= 2, 30, "the publisher reconnected")
        await wait_until(lambda: send_until_received(b"second"), 15, "a command after the restart", interval=0.3)
    finally:
        sender.loop_stop()
        sender.disconnect()
        await pub.close()
