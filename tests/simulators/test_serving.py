"""Modbus values equal what ``served()`` recorded; ports, disabled servers, live = offline physics.

OPC UA reads are in ``test_opcua_reads`` (one shared server for the whole module).
"""

from __future__ import annotations

import asyncio
import socket
import struct
from collections.abc import Sequence

import pytest
from pymodbus import FramerType
from pymodbus.client import AsyncModbusTcpClient

from simulators import MachineState, Plant, Simulation
from simulators.register_map import float32_round


def decode_float32(registers: Sequence[int]) -> list[float]:
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
            snapshots: dict[int, list[float]] = {stamp: [] for stamp, _ in histories[0]}
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
            assert float(parts) in {v for _, v in sim.served("modbus", "press-1", "parts_count")}
            assert float(regs[102]) in {v for _, v in sim.served("modbus", "press-1", "state_code")}
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


@pytest.mark.parametrize("protocol", ["opcua", "modbus"])
async def test_port_in_use_is_an_oserror_and_starts_nothing(protocol: str) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        ports = {"opcua_port": None, "modbus_port": None, f"{protocol}_port": port}
        sim = Simulation(**ports)
        with pytest.raises(OSError):  # noqa: PT011 - the OS message varies; the type is the contract
            await sim.start()
        await sim.stop()  # idempotent after a failed start: nothing is left listening


async def test_modbus_device_identification_is_a_read(modbus_sim: Simulation) -> None:
    client = AsyncModbusTcpClient("127.0.0.1", port=modbus_sim.modbus.port, timeout=5)
    try:
        assert await client.connect()
        info = await client.read_device_information(device_id=1)
        assert not info.isError()
        assert info.information[0] == b"edge-agent"  # type: ignore[attr-defined]  # the FC 43 response
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


async def test_modbus_rtu_over_tcp_framing() -> None:
    async with Simulation(opcua_port=None, modbus_framing="rtu_over_tcp", update_interval=0.05) as sim:
        client = AsyncModbusTcpClient("127.0.0.1", port=sim.modbus.port, framer=FramerType.RTU, timeout=5)
        try:
            assert await client.connect()
            response = await client.read_input_registers(0, count=2, device_id=1)
            assert not response.isError()
            (flow,) = decode_float32(response.registers)
            assert flow in {v for _, v in sim.served("modbus", "pump-1", "flow")}
        finally:
            client.close()
