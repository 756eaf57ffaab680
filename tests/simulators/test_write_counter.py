"""The write counter sees every client write request and nothing else (the witness that the agent never writes)."""

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
from tests.helpers.opcua_reads import Client


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


async def test_every_modbus_write_function_is_counted_and_refused(modbus_sim: Simulation) -> None:
    sim = modbus_sim
    client = AsyncModbusTcpClient("127.0.0.1", port=sim.modbus.port, timeout=5)
    try:
        assert await client.connect()
        responses = [
            await client.write_coil(0, True, device_id=2),  # FC 5
            await client.write_register(0, 5, device_id=1),  # FC 6
            await client.write_coils(0, [True, False], device_id=1),  # FC 15
            await client.write_registers(0, [1, 2], device_id=1),  # FC 16
            await client.mask_write_register(address=1, and_mask=0, or_mask=1, device_id=1),  # FC 22
            await client.readwrite_registers(read_address=0, read_count=1, write_address=0, values=[7], device_id=1),
        ]  # the last is FC 23
        assert [r.isError() for r in responses] == [True] * 6
        assert not (await client.read_holding_registers(0, count=2, device_id=1)).isError()
    finally:
        client.close()
    assert sim.write_count == 6


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
