"""OPC UA depth against a real loopback server: value kinds, statuses, chunking, staleness, subscriptions."""

from __future__ import annotations

import asyncio
import re
from collections.abc import AsyncIterator
from typing import Any

import pytest
import pytest_asyncio

from connectors.opcua.client import OpcUaConnector
from connectors.opcua.config import OpcUaMachine
from edge_agent.core.errors import ConnectError
from edge_agent.core.samples import Quality, Sample
from tests.helpers.opcua_device import COUNTER_NODES, NODES, OpcUaTestDevice
from tests.helpers.waiting import wait_until

# One server for the module (starting asyncua's address space takes over a second); each test
# gets it with the values and counters of a fresh start.
pytestmark = pytest.mark.asyncio(loop_scope="module")


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def shared_device() -> AsyncIterator[OpcUaTestDevice]:
    async with OpcUaTestDevice(max_nodes_per_read=4) as dev:
        yield dev


@pytest_asyncio.fixture(loop_scope="module")
async def device(shared_device: OpcUaTestDevice) -> AsyncIterator[OpcUaTestDevice]:
    await shared_device.reset()
    yield shared_device
    assert shared_device.write_count == 0, "a connector sent a Write request"


def machine(device: OpcUaTestDevice, names: list[str], **keys: Any) -> OpcUaMachine:
    tags = [{"name": name, "node": device.node(name)} for name in names]
    tags += keys.pop("extra_tags", [])
    return OpcUaMachine.model_validate(
        {
            "type": "opcua",
            "id": "dev",
            "endpoint": device.endpoint,
            "security": {"policy": "None", "mode": "None"},  # the test device offers only None
            "interval": "3s",
            "tags": tags,
            **keys,
        }
    )


async def test_value_kinds_statuses_chunking_and_staleness(device: OpcUaTestDevice) -> None:
    names = list(NODES) + COUNTER_NODES  # 20 nodes
    connector = OpcUaConnector(machine(device, names, max_age="10m"))
    await connector.connect()
    device.read_sizes.clear()
    try:
        batch = await connector.read()
    finally:
        await connector.close()
    samples = {s.tag: s for s in batch.samples}
    assert [s.tag for s in batch.samples] == names
    good = {name: samples[name].value for name in ["double", "int", "big", "flag", "text", "label"]}
    assert good == {"double": 1.5, "int": -7, "big": 2**63 + 5, "flag": True, "text": "hello", "label": "Running"}
    assert type(samples["flag"].value) is bool
    assert type(samples["int"].value) is int
    assert all(samples[name].quality is Quality.GOOD for name in good)
    assert (samples["uncertain"].quality, samples["uncertain"].value, samples["uncertain"].reason) == (
        Quality.UNCERTAIN,
        4.5,
        "UncertainLastUsableValue",
    )
    assert (samples["broken"].quality, samples["broken"].value, samples["broken"].reason) == (
        Quality.BAD,
        None,
        "BadSensorFailure",
    )
    assert samples["array"].quality is Quality.BAD
    assert "array of 3 values" in (samples["array"].reason or "")
    old = samples["old"]
    assert old.quality is Quality.UNCERTAIN
    assert old.value == 9.0
    age = re.fullmatch(r"stale: the source timestamp is ([0-9.]+) s old \(max_age 600 s\)", old.reason or "")
    assert age is not None, old.reason
    assert 3600 <= float(age.group(1)) < 3660
    assert [samples[n].value for n in COUNTER_NODES] == [float(i) for i in range(10)]
    # The server allows 4 nodes per Read: 20 nodes take 5 Read calls, and nothing else is read.
    assert connector.nodes_per_read == 4
    assert device.read_sizes == [4, 4, 4, 4, 4]


async def test_elements_of_an_array(device: OpcUaTestDevice) -> None:
    tags = [{"name": f"e{i}", "node": device.node("array"), "index": i} for i in range(4)]
    connector = OpcUaConnector(machine(device, [], extra_tags=tags))
    await connector.connect()
    try:
        batch = await connector.read()
    finally:
        await connector.close()
    assert [s.value for s in batch.samples] == [1.0, 2.0, 3.0, None]
    assert batch.samples[3].reason == "index 3 is past the end of the node's array of 3 values"


async def test_configured_limits_tighten_the_servers(device: OpcUaTestDevice) -> None:
    config = machine(
        device,
        COUNTER_NODES[:5],
        max_nodes_per_read=2,
        extra_tags=[{"name": "old", "node": device.node("old"), "max_age": "2h"}],
        max_age="10m",  # the hour-old node would be stale by this, but its own max_age wins
    )
    connector = OpcUaConnector(config)
    await connector.connect()
    device.read_sizes.clear()
    batch = await connector.read()
    await connector.close()
    assert device.read_sizes == [2, 2, 2]
    assert connector.reads_per_cycle == 3
    assert all(s.quality is Quality.GOOD for s in batch.samples)  # "old" has its own, longer max_age


async def changes(connector: OpcUaConnector, want: int, timeout: float = 5) -> list[Sample]:
    """Read until ``want`` changes have come in (subscriptions deliver in the background)."""
    collected: list[Sample] = []

    async def enough() -> bool:
        batch = await connector.read()
        collected.extend(s for s in batch.samples if s.quality is not Quality.BAD)
        return len(collected) >= want

    await wait_until(enough, timeout, f"{want} change(s) from the subscription")
    return collected


async def test_subscription_reports_changes_in_order(device: OpcUaTestDevice) -> None:
    config = machine(
        device,
        ["double", "text"],
        mode="subscribe",
        interval="100ms",
        sampling_interval="0s",
        extra_tags=[
            {"name": "n0", "node": device.node("n0"), "deadband": 1.0},
            {"name": "missing", "node": device.node("no_such_node")},
        ],
    )
    connector = OpcUaConnector(config)
    await connector.connect()
    try:
        initial = await changes(connector, 3)
        assert {s.tag: s.value for s in initial} == {"double": 1.5, "text": "hello", "n0": 0.0}
        await device.set("n0", 0.5)  # within the deadband: not reported
        for value in (2.5, 3.5, 4.5):
            await device.set("double", value)
        await device.set("n0", 2.0)
        later = await changes(connector, 4)
        assert [(s.tag, s.value) for s in later] == [("double", 2.5), ("double", 3.5), ("double", 4.5), ("n0", 2.0)]
        timestamps = [s.timestamp_ns for s in later if s.tag == "double"]
        assert timestamps == sorted(timestamps)
        batch = await connector.read()
        missing = [s for s in batch.samples if s.tag == "missing"]
        assert len(missing) == 1
        assert (missing[0].reason or "").startswith("BadNodeIdUnknown")
        assert connector.dropped_samples == 0
    finally:
        await connector.close()
    assert device.read_sizes == [3]  # only the lookup of namespaces and limits: values came by subscription


async def test_monitored_items_are_created_within_the_servers_limit(device: OpcUaTestDevice) -> None:
    connector = OpcUaConnector(machine(device, COUNTER_NODES, mode="subscribe", interval="100ms"))
    await connector.connect()
    try:
        assert device.monitored_item_calls == [4, 4, 2]  # MaxMonitoredItemsPerCall is 4 on this server
        values = {s.tag: s.value for s in await changes(connector, 10)}
        assert values == {name: float(i) for i, name in enumerate(COUNTER_NODES)}
    finally:
        await connector.close()


async def test_subscription_queue_is_bounded(device: OpcUaTestDevice) -> None:
    config = machine(device, ["double"], mode="subscribe", interval="100ms", max_queued_samples=2)
    connector = OpcUaConnector(config)
    await connector.connect()
    try:
        await wait_until(
            lambda: connector.dropped_samples == 0 and len(connector._feed.changes) == 1, 5, "initial value"
        )
        for value in (10.0, 11.0, 12.0, 13.0):
            await device.set("double", value)
            await asyncio.sleep(0.15)  # one publish each, so the server does not merge them
        await wait_until(lambda: connector.dropped_samples == 3, 5, "three changes dropped")
        batch = await connector.read()
        assert [s.value for s in batch.samples] == [12.0, 13.0]
    finally:
        await connector.close()


async def test_subscription_read_fails_when_the_server_goes_away() -> None:
    async with OpcUaTestDevice() as device:
        connector = OpcUaConnector(machine(device, ["double"], mode="subscribe", interval="100ms"))
        await connector.connect()
        await changes(connector, 1)
    failed: list[Exception] = []

    async def read_fails() -> bool:
        try:
            await connector.read()
        except ConnectError as exc:
            failed.append(exc)
            return True
        return False

    # the client notices the closed link within its watchdog interval
    await wait_until(read_fails, 10, "a read to fail after the server went away", interval=0.1)
    assert "dev" in str(failed[0])
    await connector.close()


async def test_user_name_and_password() -> None:
    async with OpcUaTestDevice(users={"operator": "s3cret-pw"}) as device:
        right = OpcUaConnector(machine(device, ["double"], username="operator", password="s3cret-pw"))
        await right.connect()
        assert (await right.read()).good_count == 1
        await right.close()
        for keys, refusal in (
            ({"username": "operator", "password": "wrong-pw"}, "login as 'operator' was refused (BadUserAccessDenied)"),
            ({}, "the server does not allow anonymous sessions"),
        ):
            connector = OpcUaConnector(machine(device, ["double"], **keys))
            with pytest.raises(ConnectError) as exc:
                await connector.connect()
            assert refusal in str(exc.value)
            assert "Fix:" in str(exc.value)
            assert "wrong-pw" not in str(exc.value)
            assert "s3cret" not in str(exc.value)
            await connector.close()


async def test_a_server_that_refuses_large_reads_is_read_in_smaller_chunks() -> None:
    async with OpcUaTestDevice(enforce_max_nodes=3) as device:
        connector = OpcUaConnector(machine(device, COUNTER_NODES))
        await connector.connect()
        device.read_sizes.clear()
        try:
            first = await connector.read()
            assert [s.value for s in first.samples] == [float(i) for i in range(10)]
            assert connector.nodes_per_read == 2  # 10 refused, 5 refused, 2 accepted
            device.read_sizes.clear()
            await connector.read()
            assert device.read_sizes == [2, 2, 2, 2, 2]
        finally:
            await connector.close()
