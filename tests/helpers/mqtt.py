"""MQTT collectors: what reaches the broker, as a plain paho client sees it (never the agent's code)."""

from __future__ import annotations

import json
import threading
from typing import Any

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion

from tests.helpers.servers import Mosquitto, unique_name


class Subscriber:
    """Counts telemetry per (machine, tag, t) and keeps the last retained agent status."""

    def __init__(self, broker: Mosquitto, prefix: str) -> None:
        self.samples: dict[tuple[str, str, int], Any] = {}
        self.order: list[int] = []
        self.messages = 0
        self.status: dict[str, Any] | None = None
        self.client = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=unique_name("sub"), clean_session=False)
        self.client.on_message = self._on_message
        self.client.on_connect = lambda c, *_: c.subscribe(f"{prefix}/#", qos=1)
        # paho annotates int seconds, but its wait loop sleeps fractions; 0.1 s keeps reconnects fast
        self.client.reconnect_delay_set(0.1, 0.5)  # type: ignore[arg-type]
        self.client.connect(broker.host, broker.port, keepalive=5)
        self.client.loop_start()

    def _on_message(self, _c: mqtt.Client, _u: object, message: mqtt.MQTTMessage) -> None:
        payload = json.loads(message.payload)
        if message.topic.endswith("/_agent/" + message.topic.split("/")[-2] + "/status"):
            self.status = payload
            return
        if not message.topic.endswith("/telemetry"):
            return
        self.messages += 1
        for sample in payload["samples"]:
            self.samples[(payload["machine"], sample["tag"], sample["t"])] = sample["v"]
            self.order.append(sample["t"])

    def close(self) -> None:
        self.client.loop_stop()
        self.client.disconnect()


def retained(broker: Mosquitto, topic: str, timeout: float = 10.0) -> dict[str, Any] | None:
    """The retained message of ``topic`` as a fresh subscriber gets it (None: nothing retained).

    Mosquitto sends retained messages right after the SUBACK; a probe message published on a
    private topic after subscribing marks the end of them, so "nothing retained" is a real answer
    and not a timeout.
    """
    got: list[dict[str, Any]] = []
    done = threading.Event()
    probe = f"{topic}/_probe_{unique_name()}"
    client = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=unique_name("late"))

    def on_message(_c: mqtt.Client, _u: object, message: mqtt.MQTTMessage) -> None:
        if message.topic == probe:
            done.set()
        elif message.retain:
            got.append(json.loads(message.payload))

    def on_subscribe(c: mqtt.Client, *_: object) -> None:
        c.publish(probe, b"{}", qos=1)

    client.on_message = on_message
    client.on_subscribe = on_subscribe
    client.on_connect = lambda c, *_: c.subscribe([(topic, 1), (probe, 1)])
    client.connect(broker.host, broker.port, keepalive=5)
    client.loop_start()
    try:
        if not done.wait(timeout):
            raise AssertionError(f"no answer from the broker on {topic} within {timeout} s")
    finally:
        client.loop_stop()
        client.disconnect()
    return got[-1] if got else None
