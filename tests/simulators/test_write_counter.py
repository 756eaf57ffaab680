"""The write counter sees every client write request and nothing else (invariant 1's witness)."""

from __future__ import annotations

import contextlib

import pytest
from asyncua import ua
from asyncua.ua.object_ids import ObjectIds
from asyncua.ua.uaerrors import UaStatusCodeError
from pymodbus.client import AsyncModbusTcpClient

from simulators import Simulation
from simulators.opcua_server import string_node
from simulators.register_map import NAMESPACE_URI
from tests.simulators.opcua_helpers import Client


async def test_modbus_reads_are_not_counted(modbus_sim: Simulation) -> None:
    sim = modbus_sim
    client = AsyncModbusTcpClient("127.0.0.1", port=sim.modbus.port, timeout=5)
    try:
        assert await client.connect()
        for _ in range(3):
            assert not (await client.read_input_registers(0, count=10, device_id=1)).isError()
            assert not (await client.read_holding_registers(100, count=3, device_id=2)).isError()
            await client.read_coils(0, count=1, device_id=1)
    finally:
        client.close()
    assert sim.write_count == 0


async def test_modbus_writes_are_counted_and_refused(modbus_sim: Simulation) -> None:
    sim = modbus_sim
    client = AsyncModbusTcpClient("127.0.0.1", port=sim.modbus.port, timeout=5)
    try:
        assert await client.connect()
        single = await client.write_register(0, 5, device_id=1)
        many = await client.write_registers(0, [1, 2], device_id=1)
        coil = await client.write_coil(0, True, device_id=2)
        assert single.isError()
        assert many.isError()
        assert coil.isError()
    finally:
        client.close()
    assert sim.write_count == 3


async def test_opcua_reads_are_not_counted_writes_and_calls_are(sim: Simulation) -> None:
    async with Client(sim.opcua.endpoint, timeout=5) as client:
        idx = await client.get_namespace_index(NAMESPACE_URI)
        node = client.get_node(string_node("pump-1.flow", idx))
        await node.read_value()
        await client.nodes.objects.get_children()
        assert sim.write_count == 0
        with pytest.raises(UaStatusCodeError):  # refused: the variable is read-only; the request still counts
            await node.write_value(ua.DataValue(ua.Variant(1.0, ua.VariantType.Double)))
        assert sim.write_count == 1
        server_node = client.nodes.server
        with contextlib.suppress(UaStatusCodeError):
            await server_node.call_method(
                ua.NodeId(ua.Int32(ObjectIds.Server_GetMonitoredItems)), ua.Variant(1, ua.VariantType.UInt32)
            )
        assert sim.write_count == 2
