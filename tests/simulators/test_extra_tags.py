"""Auxiliary tags (``extra_tags``) for load tests: served on both protocols, bounded, deterministic."""

from __future__ import annotations

import struct

import pytest
from asyncua import ua
from asyncua.client.client import Client
from pymodbus.client import AsyncModbusTcpClient

from simulators import Simulation, SimulatorError


async def test_extra_tags_are_served_after_the_signals_on_both_protocols() -> None:
    async with Simulation(seed=4, machines=["pump-1"], update_interval=0.05, extra_tags=44) as sim:
        names = [name for name, _ in sim.signals("pump-1")]
        assert len(names) == 5 + 44
        assert names[5:7] == ["aux_01", "aux_02"]
        await sim.wait_updates(2)
        client = AsyncModbusTcpClient("127.0.0.1", port=sim.modbus.port)
        await client.connect()
        try:
            reply = await client.read_input_registers(2 * 48, count=2, device_id=sim.modbus.unit_id("pump-1"))
        finally:
            client.close()
        value = struct.unpack(">f", struct.pack(">HH", *reply.registers))[0]
        assert value in {v for _, v in sim.served("modbus", "pump-1", "aux_44")}
        async with Client(sim.opcua.endpoint) as opcua:
            index = await opcua.get_namespace_index(sim.opcua.namespace_uri)
            node = opcua.get_node(ua.NodeId(ua.String("pump-1.aux_44"), ua.Int16(index)))
            assert await node.read_value() in {v for _, v in sim.served("opcua", "pump-1", "aux_44")}
        assert sim.write_count == 0


def test_too_many_extra_tags_are_refused_with_the_limit() -> None:
    with pytest.raises(SimulatorError, match="0 to 90"):
        Simulation(extra_tags=91)
