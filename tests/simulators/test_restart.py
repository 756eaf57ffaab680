"""A server taken down and brought back: refused while down, same port after, current values at once."""

from __future__ import annotations

import asyncio
import struct

import pytest
from pymodbus.client import AsyncModbusTcpClient

from simulators import Simulation
from simulators.opcua_server import string_node
from simulators.register_map import NAMESPACE_URI
from tests.helpers.opcua_reads import Client, source_ns, value_of


async def test_modbus_server_down_and_back_on_the_same_port(modbus_sim: Simulation) -> None:
    sim = modbus_sim
    port = sim.modbus.port
    await sim.stop_server("modbus")
    assert not sim.modbus.running
    down = AsyncModbusTcpClient("127.0.0.1", port=port, timeout=1, retries=0)
    assert not await down.connect()
    down.close()
    recorded = len(sim.served("modbus", "pump-1", "flow"))
    async with asyncio.timeout(5):
        await sim.wait_updates(3)
    assert len(sim.served("modbus", "pump-1", "flow")) == recorded  # nothing served while down

    await sim.start_server("modbus")
    assert sim.modbus.port == port
    client = AsyncModbusTcpClient("127.0.0.1", port=port, timeout=5)
    try:
        assert await client.connect()
        registers = (await client.read_input_registers(0, count=2, device_id=1)).registers
        value = struct.unpack(">f", struct.pack(">HH", *registers))[0]
        assert value in {v for _, v in sim.served("modbus", "pump-1", "flow")[-5:]}
    finally:
        client.close()


async def test_opcua_server_down_and_back_on_the_same_port(sim: Simulation) -> None:
    endpoint = sim.opcua.endpoint
    await sim.stop_server("opcua")
    with pytest.raises(OSError):  # noqa: PT011 - connection refused; the OS message varies
        async with Client(endpoint, timeout=2):
            pass
    await sim.start_server("opcua")
    assert sim.opcua.endpoint == endpoint
    async with Client(endpoint, timeout=5) as client:
        idx = await client.get_namespace_index(NAMESPACE_URI)
        value = await client.get_node(string_node("press-1.oil_temperature", idx)).read_data_value()
        stamp_ns = source_ns(value)
        assert (stamp_ns, value_of(value)) in sim.served("opcua", "press-1", "oil_temperature")
