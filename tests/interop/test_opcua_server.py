"""The agent's OPC UA connector against an OPC UA server we did not write (node-opcua).

The server (``opcua_server.mjs``) holds one variable of each common type, a Double array, an
AnalogItem with EngineeringUnits, a node with a numeric id, and ``Clock``, whose value is always
the Unix time of its own SourceTimestamp. A decoy namespace registered before ours has a node with
the same string id and another value, so a connector that does not resolve ``nsu=`` by URI reads
the wrong value. The server counts Write/Call requests: the read-only agent must send none.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any, TypeVar

import pytest

from connectors.opcua.client import OpcUaConnector
from connectors.opcua.config import OpcUaMachine
from edge_agent.core.samples import Batch, Quality, Sample
from tests.helpers.waiting import wait_until
from tests.interop.node_opcua import CLOCK_NODE, INDEXES, NAMESPACE, SERVED, UNITS, NodeOpcUaServer

NO_SECURITY = {"policy": "None", "mode": "None"}
T = TypeVar("T")


@pytest.fixture
def server(node_opcua_server: NodeOpcUaServer) -> NodeOpcUaServer:
    return node_opcua_server


def machine(server: NodeOpcUaServer, tags: list[dict[str, Any]], **keys: Any) -> OpcUaMachine:
    return OpcUaMachine.model_validate(
        {
            "type": "opcua",
            "id": "node-opcua",
            "endpoint": server.endpoint,
            "interval": "3s",
            "connect_timeout": "20s",  # a loaded box; the default is the poll's timeout
            "tags": tags,
            "security": NO_SECURITY,
            **keys,
        }
    )


async def until(attempt: Callable[[], Awaitable[T | None]], timeout: float, what: str) -> T:
    """Repeat ``attempt`` (which talks to the server) until it returns a result; fail after ``timeout`` s."""
    results: list[T] = []

    async def answered() -> bool:
        result = await attempt()
        if result is not None:
            results.append(result)
        return result is not None

    await wait_until(answered, timeout, what)
    return results[0]


def served_tags() -> list[dict[str, Any]]:
    tags: list[dict[str, Any]] = []
    for name, (node, _, _) in SERVED.items():
        tag: dict[str, Any] = {"name": name, "node": node}
        if name in INDEXES:
            tag["index"] = INDEXES[name]
        tags.append(tag)
    return [*tags, {"name": "clock", "node": CLOCK_NODE}]


def assert_clock(sample: Sample) -> None:
    """Clock's value is the Unix time of its SourceTimestamp (milliseconds, exact in a Double)."""
    assert sample.quality is Quality.GOOD, sample
    assert type(sample.value) is float, sample
    assert sample.timestamp_ns % 1_000_000 == 0, f"node-opcua stamps whole milliseconds: {sample}"
    assert sample.value == sample.timestamp_ns // 1_000_000 / 1000, sample


async def test_poll_reads_every_type_with_its_unit(server: NodeOpcUaServer) -> None:
    tags = [
        *served_tags(),
        {"name": "whole_array", "node": f"nsu={NAMESPACE};s=Spectrum"},
        {"name": "missing", "node": f"nsu={NAMESPACE};s=NoSuchNode"},
    ]
    connector = OpcUaConnector(machine(server, tags))
    await connector.connect()
    try:
        first = await connector.read()
        second = await until(lambda: _later_clock(connector, first), 10, "Clock to move on")
    finally:
        await connector.close()

    samples = {s.tag: s for s in first.samples}
    assert [s.tag for s in first.samples] == [t["name"] for t in tags]
    for name, (_, value, kind) in SERVED.items():
        sample = samples[name]
        assert sample.quality is Quality.GOOD, sample
        assert sample.value == value, f"{name}: read {sample.value!r}, the server holds {value!r}"
        assert type(sample.value) is kind, f"{name}: {type(sample.value).__name__}, want {kind.__name__}"
        assert sample.unit == UNITS.get(name), f"{name}: unit {sample.unit!r}"
    assert_clock(samples["clock"])
    assert_clock(second)
    assert second.timestamp_ns > samples["clock"].timestamp_ns

    assert samples["whole_array"].quality is Quality.BAD
    assert "array of 3 values" in (samples["whole_array"].reason or ""), samples["whole_array"]
    assert samples["missing"].quality is Quality.BAD
    assert (samples["missing"].reason or "").startswith("BadNodeIdUnknown"), samples["missing"]


async def _later_clock(connector: OpcUaConnector, first: Batch) -> Sample | None:
    """A Clock sample newer than the one in ``first`` (Clock ticks every 100 ms), else None."""
    (before,) = [s for s in first.samples if s.tag == "clock"]
    batch = await connector.read()
    (now,) = [s for s in batch.samples if s.tag == "clock"]
    return now if now.timestamp_ns > before.timestamp_ns else None


async def test_subscription_delivers_every_clock_change(server: NodeOpcUaServer) -> None:
    tags = [
        {"name": "clock", "node": CLOCK_NODE},
        {"name": "temperature", "node": SERVED["temperature"][0]},
        {"name": "label", "node": SERVED["label"][0]},
    ]
    # Publishing every 2 s (so the per-request timeout, 80 % of that, holds on a loaded box); the
    # server samples Clock every 100 ms and queues the changes in between.
    config = machine(server, tags, mode="subscribe", interval="2s", sampling_interval="100ms", queue_size=100)
    connector = OpcUaConnector(config)
    received: list[Sample] = []

    async def five_clock_changes() -> bool | None:
        received.extend((await connector.read()).samples)
        return True if sum(s.tag == "clock" for s in received) >= 5 else None

    await connector.connect()
    try:
        await until(five_clock_changes, 20, "five Clock changes by subscription")
    finally:
        await connector.close()

    clocks = [s for s in received if s.tag == "clock"]
    for sample in clocks:
        assert_clock(sample)
    stamps = [s.timestamp_ns for s in clocks]
    assert stamps == sorted(set(stamps)), "changes arrive once each, in order"
    others = {s.tag: s for s in received if s.tag != "clock"}
    assert (others["temperature"].value, others["temperature"].unit) == (21.5, "°C")
    assert others["label"].value == SERVED["label"][1]
    assert sum(s.tag == "temperature" for s in received) == 1, "a value that does not change is reported once"


def test_server_runs_in_its_own_pki_folder(server: NodeOpcUaServer) -> None:
    """node-opcua keeps its certificate under the test's folder, never in ~/.config."""
    own = list((server.pki / "server").rglob("*.pem")) + list((server.pki / "server").rglob("*.der"))
    assert own, f"no server certificate under {server.pki}"
    assert Path(server.log_path).parent == server.pki.parent
