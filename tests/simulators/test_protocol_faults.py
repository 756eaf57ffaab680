"""Protocol faults seen through real clients: latency, exceptions, stale values, bad status, drops."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator

import pytest
from asyncua.ua.status_codes import StatusCodes
from pymodbus.client import AsyncModbusTcpClient

from simulators import ScenarioError, Simulation, SimulatorError, parse_scenario
from simulators.opcua_server import string_node
from simulators.register_map import NAMESPACE_URI
from tests.helpers.opcua_reads import Client, source_ns, status_value, value_of


@pytest.fixture
async def modbus_client(modbus_sim: Simulation) -> AsyncIterator[AsyncModbusTcpClient]:
    client = AsyncModbusTcpClient("127.0.0.1", port=modbus_sim.modbus.port, timeout=5, retries=0)
    assert await client.connect()
    yield client
    client.close()


async def timed(awaitable: object) -> tuple[object, float]:
    began = time.perf_counter()
    result = await awaitable  # type: ignore[misc]
    return result, time.perf_counter() - began


async def test_modbus_latency_delays_only_that_unit(
    modbus_sim: Simulation, modbus_client: AsyncModbusTcpClient
) -> None:
    modbus_sim.inject_protocol_fault("modbus", "latency", "pump-1", latency="1s")
    slow, slow_s = await timed(modbus_client.read_input_registers(0, count=2, device_id=1))
    fast, fast_s = await timed(modbus_client.read_input_registers(0, count=2, device_id=2))
    assert slow_s >= 1.0
    assert fast_s < 1.0  # not held up by the fault: the bound is the injected latency, not a speed target
    assert not slow.isError()  # type: ignore[attr-defined]
    assert not fast.isError()  # type: ignore[attr-defined]


@pytest.mark.parametrize(("code", "number"), [("device_busy", 6), ("illegal_address", 2), (4, 4)])
async def test_modbus_exception_responses(
    modbus_sim: Simulation, modbus_client: AsyncModbusTcpClient, code: str | int, number: int
) -> None:
    modbus_sim.inject_protocol_fault("modbus", "exception", "press-1", code=code)
    refused = await modbus_client.read_holding_registers(100, count=3, device_id=2)
    assert refused.isError()
    assert refused.exception_code == number
    assert not (await modbus_client.read_holding_registers(100, count=3, device_id=1)).isError()
    modbus_sim.clear_protocol_faults("modbus")
    assert not (await modbus_client.read_holding_registers(100, count=3, device_id=2)).isError()
    assert modbus_sim.write_count == 0


async def test_modbus_stale_values_freeze_until_cleared(
    modbus_sim: Simulation, modbus_client: AsyncModbusTcpClient
) -> None:
    modbus_sim.inject_protocol_fault("modbus", "stale", "pump-1")
    served_before = len(modbus_sim.served("modbus", "pump-1", "flow"))
    first = (await modbus_client.read_input_registers(0, count=10, device_id=1)).registers
    async with asyncio.timeout(5):
        await modbus_sim.wait_updates(3)
    second = (await modbus_client.read_input_registers(0, count=10, device_id=1)).registers
    assert first == second
    assert len(modbus_sim.served("modbus", "pump-1", "flow")) == served_before
    modbus_sim.clear_protocol_faults()
    async with asyncio.timeout(5):
        await modbus_sim.wait_updates(2)
    third = (await modbus_client.read_input_registers(0, count=10, device_id=1)).registers
    assert third != first


async def test_modbus_dropped_connection(modbus_sim: Simulation, modbus_client: AsyncModbusTcpClient) -> None:
    assert not (await modbus_client.read_input_registers(0, count=2, device_id=1)).isError()
    assert modbus_sim.drop_connections("modbus") == 1
    fresh = AsyncModbusTcpClient("127.0.0.1", port=modbus_sim.modbus.port, timeout=5)
    try:
        assert await fresh.connect()
        assert not (await fresh.read_input_registers(0, count=2, device_id=1)).isError()
    finally:
        fresh.close()


async def test_opcua_bad_status_stale_latency_and_intermittent(sim: Simulation) -> None:
    async with Client(sim.opcua.endpoint, timeout=5) as client:
        idx = await client.get_namespace_index(NAMESPACE_URI)
        flow = client.get_node(string_node("pump-1.flow", idx))
        press = client.get_node(string_node("press-1.hydraulic_pressure", idx))

        sim.inject_protocol_fault("opcua", "bad_status", "pump-1", code="BadSensorFailure")
        async with asyncio.timeout(5):
            await sim.wait_updates(2)
        bad = await flow.read_data_value(raise_on_bad_status=False)
        assert status_value(bad) == StatusCodes.BadSensorFailure
        assert status_value(await press.read_data_value()) == StatusCodes.Good

        sim.clear_protocol_faults()
        async with asyncio.timeout(5):
            await sim.wait_updates(2)  # a Good value first, or the frozen one would stay bad
        sim.inject_protocol_fault("opcua", "stale", "pump-1")
        async with asyncio.timeout(5):
            await sim.wait_updates(2)
        first = await flow.read_data_value()
        async with asyncio.timeout(5):
            await sim.wait_updates(3)
        second = await flow.read_data_value()
        assert source_ns(first) == source_ns(second)
        assert first.Value == second.Value
        assert source_ns(await press.read_data_value()) > source_ns(first)

        sim.clear_protocol_faults()
        sim.inject_protocol_fault("opcua", "latency", "press-1", latency=1.0)
        _, slow_s = await timed(press.read_data_value())
        _, fast_s = await timed(flow.read_data_value())
        assert slow_s >= 1.0
        assert fast_s < 1.0  # not held up by the fault: the bound is the injected latency, not a speed target

        sim.clear_protocol_faults()  # intermittent: about every other update is uncertain
        sim.inject_protocol_fault("opcua", "bad_status", "pump-1", code="UncertainLastUsableValue", probability=0.5)
        seen: set[int] = set()
        async with asyncio.timeout(10):
            while len(seen) < 2:
                await sim.wait_updates(1)
                seen.add(status_value(await flow.read_data_value(raise_on_bad_status=False)))
        assert seen == {StatusCodes.Good, StatusCodes.UncertainLastUsableValue}

        sim.clear_protocol_faults()  # a machine whose clock is an hour behind
        sim.inject_protocol_fault("opcua", "clock_offset", "pump-1", offset="-1h")
        async with asyncio.timeout(5):
            await sim.wait_updates(2)
        shifted, right = await flow.read_data_value(), await press.read_data_value()
        assert (source_ns(shifted), value_of(shifted)) in sim.served("opcua", "pump-1", "flow")
        assert 3599e9 < source_ns(right) - source_ns(shifted) < 3601e9
        assert shifted.ServerTimestamp is not None
        assert shifted.ServerTimestamp.timestamp() * 1e9 - source_ns(shifted) > 3599e9  # server clock is right
        assert sim.drop_connections("opcua") == 1


async def test_bad_protocol_faults_are_refused() -> None:
    sim = Simulation(opcua_port=None, modbus_port=None)  # input is checked before any server is touched
    with pytest.raises(SimulatorError, match="Modbus fault"):
        sim.inject_protocol_fault("opcua", "exception", code="device_busy")
    with pytest.raises(SimulatorError, match="OPC UA fault"):
        sim.inject_protocol_fault("modbus", "bad_status", code="BadSensorFailure")
    with pytest.raises(SimulatorError, match="unknown Modbus exception"):
        sim.inject_protocol_fault("modbus", "exception", code="on_fire")
    with pytest.raises(SimulatorError, match="Good OPC UA status"):
        sim.inject_protocol_fault("opcua", "bad_status", code="Good")
    with pytest.raises(SimulatorError, match="latency"):
        sim.inject_protocol_fault("modbus", "latency")
    with pytest.raises(SimulatorError, match="Modbus carries no timestamps"):
        sim.inject_protocol_fault("modbus", "clock_offset", offset="1h")
    with pytest.raises(SimulatorError, match="needs an offset"):
        sim.inject_protocol_fault("opcua", "clock_offset")
    with pytest.raises(SimulatorError, match="unknown machine"):
        sim.inject_protocol_fault("modbus", "stale", "robot-1")


async def test_intermittent_modbus_exceptions(modbus_sim: Simulation, modbus_client: AsyncModbusTcpClient) -> None:
    modbus_sim.inject_protocol_fault("modbus", "exception", "pump-1", code="device_busy", probability=0.3)
    outcomes = [(await modbus_client.read_input_registers(0, count=2, device_id=1)).isError() for _ in range(200)]
    assert 30 < sum(outcomes) < 90  # about 60 of 200
    with pytest.raises(SimulatorError, match="probability"):
        modbus_sim.inject_protocol_fault("modbus", "stale", probability=0.0)


async def test_scenario_schedules_protocol_faults_on_the_live_servers() -> None:
    scenario = parse_scenario("""\
machines: [pump-1]
protocol_faults:
  - {protocol: modbus, kind: exception, code: device_busy, machine: pump-1, at: 30s, duration: 30s}
  - {protocol: opcua, kind: stale, at: 0s}
""")
    async with Simulation(scenario=scenario, update_interval=0.01, time_scale=100, opcua_port=None) as sim:
        client = AsyncModbusTcpClient("127.0.0.1", port=sim.modbus.port, timeout=5)
        try:
            assert await client.connect()
            outcomes = []
            async with asyncio.timeout(10):
                for target in (10, 40, 70):  # simulated seconds: before, inside, after the window
                    while sim.plant.time_s < target:
                        await sim.wait_updates(1)
                    response = await client.read_input_registers(0, count=2, device_id=1)
                    outcomes.append(response.exception_code if response.isError() else 0)
        finally:
            client.close()
    assert outcomes == [0, 6, 0]


@pytest.mark.parametrize(
    ("entry", "key"),
    [
        ("{protocol: opcua, kind: exception, code: device_busy}", "protocol_faults[0].kind"),
        ("{protocol: modbus, kind: exception, code: on_fire}", "protocol_faults[0].code"),
        ("{protocol: modbus, kind: latency}", "protocol_faults[0].latency"),
        ("{protocol: modbus, kind: stale, machine: robot-1}", "protocol_faults[0].machine"),
        ("{protocol: modbus, kind: stale, at: -1m}", "protocol_faults[0]"),
        ("{protocol: opcua, kind: clock_offset}", "protocol_faults[0].offset"),
        ("{protocol: modbus, kind: clock_offset, offset: 1h}", "protocol_faults[0].kind"),
    ],
)
def test_bad_scheduled_protocol_faults_are_located(entry: str, key: str) -> None:
    with pytest.raises(ScenarioError) as info:
        parse_scenario(f"protocol_faults:\n  - {entry}\n")
    assert [p.key for p in info.value.problems] == [key]
    assert "Fix:" in info.value.problems[0].message
