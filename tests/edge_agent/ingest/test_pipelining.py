"""Writes in flight while the next batch is parsed, with acks still in arrival order.

The bridge's consumer is driven directly (no broker, no database): messages go into its inbox, a
controllable writer holds each write until the test releases it, and a fake MQTT client records
the acks. Checked: at most ``writes_in_flight`` writes at once, a later write that finishes first
does not ack before the earlier one, a malformed message behind a write in flight waits for it,
a write that keeps failing keeps its batch and every later batch unacked, and a stop with
InfluxDB down leaves everything unacked for redelivery.
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence

import paho.mqtt.client as mqtt

from edge_agent.delivery.config import MqttConfig
from edge_agent.delivery.influx_writer import WriteFailed
from edge_agent.ingest.bridge import IngestBridge
from edge_agent.ingest.config import IngestConfig
from edge_agent.ingest.stats import Message

T = 1_763_800_000_000_000_000


class HeldWriter:
    """Each write waits until the test releases it (or fails it); records the lines of every call."""

    target = "held"

    def __init__(self) -> None:
        self.calls: list[list[str]] = []
        self.gates: list[asyncio.Future[None]] = []
        self.active = 0
        self.most_active = 0

    async def write(self, lines: Sequence[str] | bytes) -> None:
        gate: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self.calls.append(lines.decode().split("\n") if isinstance(lines, bytes) else list(lines))
        self.gates.append(gate)
        self.active += 1
        self.most_active = max(self.most_active, self.active)
        try:
            await gate
        finally:
            self.active -= 1

    def release(self, index: int) -> None:
        self.gates[index].set_result(None)

    def fail(self, index: int) -> None:
        self.gates[index].set_exception(WriteFailed("InfluxDB at held is unreachable: test"))

    async def ping(self) -> None:
        return None

    async def close(self) -> None:
        return None


class AckRecorder:
    """Stands in for paho's client: records acks, and dead letters published (the test answers their PUBACK)."""

    def __init__(self) -> None:
        self.acked: list[int] = []
        self.published: list[tuple[str, bytes]] = []

    def ack(self, mid: int, qos: int) -> int:
        self.acked.append(mid)
        return mqtt.MQTT_ERR_SUCCESS

    def publish(self, topic: str, payload: bytes, qos: int) -> mqtt.MQTTMessageInfo:
        self.published.append((topic, payload))
        info = mqtt.MQTTMessageInfo(1000 + len(self.published))
        info.rc = mqtt.MQTT_ERR_SUCCESS
        return info


def message(mid: int, payload: bytes | None = None) -> Message:
    body = (
        payload if payload is not None else f"telemetry,site=s,area=a,line=l,machine=m,tag=k f={mid} {T + mid}".encode()
    )
    return Message(mid, 1, "edge/s/a/l/m/telemetry", body, 0)


async def settle() -> None:
    for _ in range(20):
        await asyncio.sleep(0)


def make_bridge(writer: HeldWriter, writes_in_flight: int = 2) -> tuple[IngestBridge, AckRecorder]:
    ingest = IngestConfig(client_id="pipelining", batch_size=2, flush_interval=60.0)
    bridge = IngestBridge(
        MqttConfig(host="127.0.0.1"),
        ingest,
        writer,
        linger=60.0,
        backoff_initial=0.01,
        writes_in_flight=writes_in_flight,
    )
    bridge.receive_maximum = 100  # the broker's window: more than the batches of these tests hold
    client = AckRecorder()
    bridge.subscriber._client = client  # type: ignore[assignment]
    return bridge, client


async def test_writes_overlap_but_acks_follow_arrival_order() -> None:
    writer = HeldWriter()
    bridge, client = make_bridge(writer)
    consumer = asyncio.create_task(bridge._consume())
    try:
        for mid in range(1, 7):  # three batches of two
            bridge._inbox.put_nowait(message(mid))
        await settle()
        assert len(writer.calls) == 2  # two writes in flight, the third batch waits for a slot
        assert writer.most_active == 2
        writer.release(1)  # the second write finishes first ...
        await settle()
        assert client.acked == []  # ... but must not ack before the first
        writer.release(0)
        await settle()
        assert client.acked == [1, 2, 3, 4]
        assert len(writer.calls) == 3  # a slot freed: the third batch is on its way
        bridge._inbox.put_nowait(message(7, b"not line protocol"))  # malformed, behind a write in flight
        await settle()
        assert client.acked == [1, 2, 3, 4]
        assert [topic for topic, _ in client.published] == ["edge/_deadletter/s/a/l/m/telemetry"]
        writer.release(2)
        bridge._inbox.put_nowait(message(8))
        bridge._inbox.put_nowait(message(9))
        await settle()
        writer.release(3)
        await settle()
        assert client.acked == [1, 2, 3, 4, 5, 6]  # 7 waits for the broker to acknowledge its dead letter
        bridge.dead_letters.acked(1001, False, "Success")
        await settle()
        assert client.acked == [1, 2, 3, 4, 5, 6, 7, 8, 9]
        assert bridge.stats.malformed == 1
        assert bridge.stats.dead_lettered == 1
        assert bridge.stats.written_points == 8
        assert writer.most_active == 2
        assert bridge._unacked_in_flight == 0
    finally:
        consumer.cancel()
        await asyncio.gather(consumer, return_exceptions=True)


async def test_a_full_receive_window_flushes_at_once() -> None:
    writer = HeldWriter()
    bridge, client = make_bridge(writer)
    bridge.receive_maximum = 3  # the broker sends no more until something is acked
    consumer = asyncio.create_task(bridge._consume())
    try:
        for mid in range(1, 4):
            bridge._inbox.put_nowait(message(mid))
        await settle()
        assert [len(call) for call in writer.calls] == [2, 1]  # 2 in flight + 1 held fill the window
        writer.release(0)
        writer.release(1)
        await settle()
        assert client.acked == [1, 2, 3]
    finally:
        consumer.cancel()
        await asyncio.gather(consumer, return_exceptions=True)


async def test_one_write_in_flight_when_asked() -> None:
    writer = HeldWriter()
    bridge, client = make_bridge(writer, writes_in_flight=1)
    consumer = asyncio.create_task(bridge._consume())
    try:
        for mid in range(1, 5):
            bridge._inbox.put_nowait(message(mid))
        await settle()
        assert len(writer.calls) == 1
        writer.release(0)
        await settle()
        assert client.acked == [1, 2]
        writer.release(1)
        await settle()
        assert client.acked == [1, 2, 3, 4]
        assert writer.most_active == 1
    finally:
        consumer.cancel()
        await asyncio.gather(consumer, return_exceptions=True)


async def test_a_failing_write_holds_back_the_acks_behind_it_and_stop_leaves_them_unacked() -> None:
    writer = HeldWriter()
    bridge, client = make_bridge(writer)
    consumer = asyncio.create_task(bridge._consume())
    for mid in range(1, 5):
        bridge._inbox.put_nowait(message(mid))
    await settle()
    writer.fail(0)  # InfluxDB down for the first batch: it is retried after the backoff
    writer.release(1)  # the second batch was written
    await settle()
    assert client.acked == []
    await asyncio.sleep(0.05)
    assert len(writer.calls) == 3  # the retry of the first batch
    assert writer.calls[2] == writer.calls[0]
    writer.fail(2)
    await settle()
    bridge._stopping.set()  # stop while InfluxDB is still down
    bridge._inbox.put_nowait(None)
    async with asyncio.timeout(5):
        await consumer
    assert client.acked == []  # nothing acked: the broker redelivers all four to the next run
    assert bridge.stats.write_errors == 2
    assert bridge._unacked_in_flight == 0


async def test_stop_writes_what_it_holds_and_waits_for_writes_in_flight() -> None:
    writer = HeldWriter()
    bridge, client = make_bridge(writer)
    consumer = asyncio.create_task(bridge._consume())
    for mid in range(1, 4):  # one full batch in flight, one message held
        bridge._inbox.put_nowait(message(mid))
    await settle()
    bridge._stopping.set()
    bridge._inbox.put_nowait(None)
    await settle()
    assert len(writer.calls) == 2  # the held message went out as the final batch
    writer.release(1)
    writer.release(0)
    async with asyncio.timeout(5):
        await consumer
    assert client.acked == [1, 2, 3]


async def test_a_dead_letter_lost_to_a_reconnect_does_not_stall_the_stream() -> None:
    """The connection drops before the broker acknowledged a dead letter: that PUBACK never comes.

    The malformed message belongs to the old connection (the broker redelivers it), so it is not
    acked; what arrives on the new connection is written and acked without waiting for it.
    """
    writer = HeldWriter()
    bridge, client = make_bridge(writer)
    consumer = asyncio.create_task(bridge._consume())
    try:
        bridge._inbox.put_nowait(message(1, b"not line protocol"))
        await settle()
        assert len(client.published) == 1  # the dead letter, waiting for its PUBACK
        bridge.subscriber._generation += 1  # reconnected (paho's thread does this in on_connect) ...
        bridge.dead_letters.forget()  # ... and tells the event loop
        new = [Message(mid, 1, "edge/s/a/l/m/telemetry", message(mid).payload, 1) for mid in (2, 3)]
        for item in new:
            bridge._inbox.put_nowait(item)
        await settle()
        writer.release(0)
        await settle()
        assert client.acked == [2, 3]
        assert bridge.stats.dead_lettered == 0
        bridge.dead_letters.acked(1001, False, "Success")  # a late PUBACK of the old connection: ignored
        assert bridge.stats.dead_lettered == 0
    finally:
        consumer.cancel()
        await asyncio.gather(consumer, return_exceptions=True)
