"""Reads over a real OPC UA client equal what ``served()`` recorded: values, source timestamps, units.

These tests only read, so they share one simulation per module (asyncua's server takes about a
second to build its address space); the module ends by checking nothing was counted as a write.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import pytest
import pytest_asyncio
from asyncua import ua

from simulators import MachineState, Simulation
from simulators.opcua_server import string_node
from simulators.register_map import NAMESPACE_URI
from tests.helpers.opcua_reads import Client, source_ns, value_of

pytestmark = pytest.mark.asyncio(loop_scope="module")


@pytest_asyncio.fixture(loop_scope="module", scope="module")
async def sim() -> AsyncIterator[Simulation]:
    async with Simulation(seed=1, update_interval=0.05, modbus_port=None) as running:
        yield running
    assert running.write_count == 0


async def test_opcua_value_and_source_timestamp_equal_served(sim: Simulation) -> None:
    assert sim.opcua.endpoint == f"opc.tcp://127.0.0.1:{sim.opcua.port}/edge-sim/"
    assert sim.opcua.namespace_uri == NAMESPACE_URI
    async with Client(sim.opcua.endpoint, timeout=5) as client:
        idx = await client.get_namespace_index(NAMESPACE_URI)
        for machine_id in sim.machine_ids:
            for name, _unit in sim.signals(machine_id):
                node = client.get_node(string_node(f"{machine_id}.{name}", idx))
                value = await node.read_data_value()
                stamp_ns = source_ns(value)
                served = dict(sim.served("opcua", machine_id, name))
                assert stamp_ns in served, (machine_id, name)
                assert value_of(value) == served[stamp_ns]
                assert value.Value is not None
                assert value.Value.VariantType == ua.VariantType.Double


async def test_opcua_status_variables_and_units(sim: Simulation) -> None:
    async with Client(sim.opcua.endpoint, timeout=5) as client:
        idx = await client.get_namespace_index(NAMESPACE_URI)
        state = await client.get_node(string_node("press-1.state", idx)).read_value()
        code = await client.get_node(string_node("press-1.state_code", idx)).read_value()
        parts_value = await client.get_node(string_node("press-1.parts_count", idx)).read_data_value()
        parts = value_of(parts_value)
        assert isinstance(parts, int)
        assert (source_ns(parts_value), float(parts)) in sim.served("opcua", "press-1", "parts_count")
        assert MachineState[state.upper()] == code
        eu = await client.get_node(string_node("pump-1.flow.EngineeringUnits", idx)).read_value()
        assert eu.DisplayName.Text == "m3/h"
        flow = client.get_node(string_node("pump-1.flow", idx))
        assert (await flow.read_description()).Text == "delivered volume flow [m3/h]"
        pump = client.get_node(string_node("pump-1", idx))
        assert (await pump.read_description()).Text == "simulated pump (CentrifugalPump)"
        machines = await client.nodes.objects.get_child([f"{idx}:Machines"])
        names = sorted([(await child.read_browse_name()).Name for child in await machines.get_children()])
        assert names == sorted(sim.machine_ids)


async def test_opcua_values_move_between_reads(sim: Simulation) -> None:
    async with Client(sim.opcua.endpoint, timeout=5) as client:
        idx = await client.get_namespace_index(NAMESPACE_URI)
        node = client.get_node(string_node("pump-1.vibration_rms", idx))
        first = await node.read_data_value()
        async with asyncio.timeout(5):
            await sim.wait_updates(2)
        second = await node.read_data_value()
        assert source_ns(second) > source_ns(first)
        assert value_of(second) != value_of(first)


class _Changes:
    """Collects data-change notifications (asyncua calls ``datachange_notification``)."""

    def __init__(self) -> None:
        self.seen: list[tuple[int, float]] = []

    def datachange_notification(self, _node: object, value: float, data: object) -> None:
        stamp = data.monitored_item.Value.SourceTimestamp  # type: ignore[attr-defined]
        self.seen.append((int(stamp.timestamp()) * 10**9 + stamp.microsecond * 1000, value))


async def test_opcua_subscription_delivers_served_values(sim: Simulation) -> None:
    changes = _Changes()
    async with Client(sim.opcua.endpoint, timeout=5) as client:
        idx = await client.get_namespace_index(NAMESPACE_URI)
        subscription = await client.create_subscription(50, changes)
        await subscription.subscribe_data_change(client.get_node(string_node("pump-1.motor_current", idx)))
        async with asyncio.timeout(10):
            while len(changes.seen) < 5:
                await sim.wait_updates(1)
        await subscription.delete()
    served = set(sim.served("opcua", "pump-1", "motor_current"))
    assert set(changes.seen) <= served
