"""Values over real OPC UA and Modbus clients on loopback equal exactly what ``served()`` recorded."""

from __future__ import annotations

import asyncio
import struct

import pytest
from asyncua import Client, ua
from pymodbus.client import AsyncModbusTcpClient

from simulators import MachineState, Plant, Simulation
from simulators.register_map import NAMESPACE_URI, float32_round


async def test_opcua_value_and_source_timestamp_equal_served(sim: Simulation) -> None:
    assert sim.opcua.endpoint == f"opc.tcp://127.0.0.1:{sim.opcua.port}/edge-sim/"
    assert sim.opcua.namespace_uri == NAMESPACE_URI
    async with Client(sim.opcua.endpoint, timeout=5) as client:
        idx = await client.get_namespace_index(NAMESPACE_URI)
        for machine_id in sim.machine_ids:
            for name, _unit in sim.signals(machine_id):
                node = client.get_node(ua.NodeId(f"{machine_id}.{name}", idx))
                value = await node.read_data_value()
                stamp_ns = int(value.SourceTimestamp.timestamp()) * 10**9 + value.SourceTimestamp.microsecond * 1000
                served = dict(sim.served("opcua", machine_id, name))
                assert stamp_ns in served, (machine_id, name)
                assert value.Value.Value == served[stamp_ns]
                assert value.Value.VariantType == ua.VariantType.Double


async def test_opcua_status_variables_and_units(sim: Simulation) -> None:
    async with Client(sim.opcua.endpoint, timeout=5) as client:
        idx = await client.get_namespace_index(NAMESPACE_URI)
        state = await client.get_node(ua.NodeId("press-1.state", idx)).read_value()
        code = await client.get_node(ua.NodeId("press-1.state_code", idx)).read_value()
        parts = await client.get_node(ua.NodeId("press-1.parts_count", idx)).read_value()
        assert MachineState[state.upper()] == code
        assert isinstance(parts, int)
        eu = await client.get_node(ua.NodeId("pump-1.flow.EngineeringUnits", idx)).read_value()
        assert eu.DisplayName.Text == "m3/h"
        machines = await client.nodes.objects.get_child([f"{idx}:Machines"])
        names = sorted([(await child.read_browse_name()).Name for child in await machines.get_children()])
        assert names == sorted(sim.machine_ids)


async def test_opcua_values_move_between_reads(sim: Simulation) -> None:
    async with Client(sim.opcua.endpoint, timeout=5) as client:
        idx = await client.get_namespace_index(NAMESPACE_URI)
        node = client.get_node(ua.NodeId("pump-1.vibration_rms", idx))
        first = await node.read_data_value()
        async with asyncio.timeout(5):
            await sim.wait_updates(2)
        second = await node.read_data_value()
        assert second.SourceTimestamp > first.SourceTimestamp
        assert second.Value.Value != first.Value.Value


def decode_float32(registers: list[int]) -> list[float]:
    return [
        struct.unpack(">f", struct.pack(">HH", registers[i], registers[i + 1]))[0] for i in range(0, len(registers), 2)
    ]


async def test_modbus_input_registers_decode_to_served(modbus_sim: Simulation) -> None:
    sim = modbus_sim
    client = AsyncModbusTcpClient("127.0.0.1", port=sim.modbus.port, timeout=5)
    try:
        assert await client.connect()
        for machine_id in sim.machine_ids:
            names = [name for name, _ in sim.signals(machine_id)]
            response = await client.read_input_registers(
                0, count=2 * len(names), device_id=sim.modbus.unit_id(machine_id)
            )
            assert not response.isError()
            decoded = decode_float32(response.registers)
            histories = [sim.served("modbus", machine_id, name) for name in names]
            # One response is one plant update: find the update whose values match all signals at once.
            snapshots = {stamp: [] for stamp, _ in histories[0]}
            for history in histories:
                for stamp, value in history:
                    snapshots.setdefault(stamp, []).append(value)
            assert decoded in snapshots.values(), machine_id
    finally:
        client.close()


async def test_modbus_holding_registers_status_and_scaled_values() -> None:
    async with Simulation(seed=2, machines=["press-1"], update_interval=0.05, opcua_port=None) as sim:
        assert sim.modbus.unit_id("press-1") == 1
        client = AsyncModbusTcpClient("127.0.0.1", port=sim.modbus.port, timeout=5)
        try:
            assert await client.connect()
            response = await client.read_holding_registers(0, count=103, device_id=1)
            assert not response.isError()
            regs = response.registers
            assert regs[102] in {int(s) for s in MachineState}
            parts = (regs[100] << 16) | regs[101]
            assert 0 <= parts <= sim.plant.machine("press-1").parts_count
            cycle_served = [v for _, v in sim.served("modbus", "press-1", "cycle_time")]
            assert any(abs(regs[3] - 10 * v) <= 0.5 + 1e-4 for v in cycle_served)  # int16 of value*10
            assert regs[4:100] == [0] * 96
        finally:
            client.close()


async def test_modbus_unknown_unit_and_address_get_exceptions(modbus_sim: Simulation) -> None:
    sim = modbus_sim
    client = AsyncModbusTcpClient("127.0.0.1", port=sim.modbus.port, timeout=5)
    try:
        assert await client.connect()
        unknown = await client.read_input_registers(0, count=2, device_id=99)
        assert unknown.isError()
        assert unknown.exception_code == 0x0B
        beyond = await client.read_input_registers(100, count=2, device_id=1)
        assert beyond.isError()
        assert beyond.exception_code == 0x02
    finally:
        client.close()


async def test_disabled_servers_and_real_ports() -> None:
    async with Simulation(opcua_port=None, modbus_port=0) as only_modbus:
        assert only_modbus.modbus.port > 0
        assert only_modbus.served("opcua", "pump-1", "flow") == []
    async with Simulation(opcua_port=0, modbus_port=None) as only_opcua:
        assert only_opcua.opcua.port > 0
        assert only_opcua.served("modbus", "pump-1", "flow") == []


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
        await subscription.subscribe_data_change(client.get_node(ua.NodeId("pump-1.motor_current", idx)))
        async with asyncio.timeout(10):
            while len(changes.seen) < 5:
                await sim.wait_updates(1)
        await subscription.delete()
    served = set(sim.served("opcua", "pump-1", "motor_current"))
    assert set(changes.seen) <= served


@pytest.mark.parametrize("protocol", ["opcua", "modbus"])
async def test_port_in_use_is_an_oserror_and_starts_nothing(protocol: str) -> None:
    async with Simulation(opcua_port=0 if protocol == "opcua" else None, modbus_port=0) as first:
        taken = first.opcua.port if protocol == "opcua" else first.modbus.port
        ports = {"opcua_port": None, "modbus_port": None, f"{protocol}_port": taken}
        second = Simulation(**ports)  # type: ignore[arg-type]
        with pytest.raises(OSError):  # noqa: PT011 - the OS message varies; the type is the contract
            await second.start()
        await second.stop()
        assert first.modbus.port > 0


async def test_modbus_device_identification_is_a_read(modbus_sim: Simulation) -> None:
    client = AsyncModbusTcpClient("127.0.0.1", port=modbus_sim.modbus.port, timeout=5)
    try:
        assert await client.connect()
        info = await client.read_device_information(device_id=1)
        assert not info.isError()
        assert info.information[0] == b"edge-agent"
    finally:
        client.close()
    assert modbus_sim.write_count == 0


async def test_live_values_are_the_offline_physics_step_for_step() -> None:
    """Same seed, same steps, same values: a live run replays offline, update by update."""
    async with Simulation(seed=8, update_interval=0.01, opcua_port=None) as sim:
        async with asyncio.timeout(5):
            await sim.wait_updates(30)
        served = [v for _, v in sim.served("modbus", "press-1", "hydraulic_pressure")]
    offline = Plant(seed=8)
    expected = [offline.readings()["press-1"].values["hydraulic_pressure"]]
    expected += [offline.step(0.01)["press-1"].values["hydraulic_pressure"] for _ in range(len(served) - 1)]
    assert served == [float32_round(v) for v in expected]
