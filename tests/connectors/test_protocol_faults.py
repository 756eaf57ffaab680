"""Faults injected by the simulator at protocol level: what each connector makes of them."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import pytest
import pytest_asyncio

from connectors.modbus.client import ModbusConnector
from connectors.opcua.client import OpcUaConnector
from edge_agent.core.errors import ConnectError, ConnectorError, ReadTimeout
from edge_agent.core.samples import Quality
from simulators import Simulation
from tests.helpers.simconfig import modbus_machine, opcua_machine
from tests.helpers.waiting import wait_until

# One simulator for the module: every test clears the faults it injects.
pytestmark = pytest.mark.asyncio(loop_scope="module")


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def shared_sim() -> AsyncIterator[Simulation]:
    async with Simulation(seed=1, update_interval=0.1) as simulation:
        yield simulation
    assert simulation.write_count == 0, "a connector sent a write request to the simulator"


@pytest_asyncio.fixture(loop_scope="module")
async def sim(shared_sim: Simulation) -> AsyncIterator[Simulation]:
    shared_sim.clear_protocol_faults()
    yield shared_sim
    shared_sim.clear_protocol_faults()


async def test_modbus_device_busy_marks_tags_bad_and_spares_other_units(sim: Simulation) -> None:
    first, second = sim.machine_ids[:2]
    busy = ModbusConnector(modbus_machine(sim, first))
    calm = ModbusConnector(modbus_machine(sim, second))
    await busy.connect()
    await calm.connect()
    try:
        sim.inject_protocol_fault("modbus", "exception", first, code="device_busy")
        batch = await busy.read()
        assert {s.reason for s in batch.samples} == {"Modbus exception 6: server device busy"}
        assert (await calm.read()).good_count == len(calm.plan[0].tags) + sum(len(r.tags) for r in calm.plan[1:])
        sim.clear_protocol_faults("modbus")
        assert (await busy.read()).good_count == len(batch.samples)
    finally:
        await busy.close()
        await calm.close()


async def test_modbus_slow_device_and_dropped_connection(sim: Simulation) -> None:
    machine = sim.machine_ids[0]
    connector = ModbusConnector(modbus_machine(sim, machine, interval="500ms"))
    await connector.connect()
    try:
        sim.inject_protocol_fault("modbus", "latency", machine, latency="1s")
        with pytest.raises(ReadTimeout):
            await connector.read()
        sim.clear_protocol_faults("modbus")
        await connector.close()
        await connector.connect()
        assert (await connector.read()).good_count > 0
        assert sim.drop_connections("modbus") >= 1
        with pytest.raises(ConnectorError):
            async with asyncio.timeout(5):
                await connector.read()
        await connector.connect()
        assert (await connector.read()).good_count > 0
    finally:
        await connector.close()


async def test_opcua_bad_status_stale_values_and_latency(sim: Simulation) -> None:
    machine = sim.machine_ids[0]
    namespace = sim.opcua.namespace_uri
    extra = [{"name": "state", "node": f"nsu={namespace};s={machine}.state"}]
    connector = OpcUaConnector(opcua_machine(sim, machine, extra_tags=extra, max_age="1s"))
    impatient = OpcUaConnector(opcua_machine(sim, machine, interval="500ms"))
    await connector.connect()
    await impatient.connect()
    try:
        sim.inject_protocol_fault("opcua", "bad_status", machine, code="BadSensorFailure")
        await sim.wait_updates(2)
        batch = await connector.read()
        signals = [s for s in batch.samples if s.tag != "state"]
        assert {(s.quality, s.reason) for s in signals} == {(Quality.BAD, "BadSensorFailure")}
        assert next(s for s in batch.samples if s.tag == "state").quality is Quality.GOOD
        sim.clear_protocol_faults("opcua")
        await sim.wait_updates(2)  # good values again before they freeze

        sim.inject_protocol_fault("opcua", "stale", machine)
        await sim.wait_updates(15)  # 1.5 s without new values or timestamps
        batch = await connector.read()
        assert {s.quality for s in batch.samples} == {Quality.UNCERTAIN}
        assert all((s.reason or "").startswith("stale: the source timestamp is") for s in batch.samples)
        sim.clear_protocol_faults("opcua")
        await sim.wait_updates(2)
        assert (await connector.read()).good_count == len(batch.samples)

        sim.inject_protocol_fault("opcua", "latency", machine, latency="1s")
        with pytest.raises(ReadTimeout):
            await impatient.read()  # its timeout is 0.4 s
    finally:
        sim.clear_protocol_faults("opcua")
        await connector.close()
        await impatient.close()


async def test_opcua_dropped_connection_then_reconnect(sim: Simulation) -> None:
    machine = sim.machine_ids[0]
    connector = OpcUaConnector(opcua_machine(sim, machine))
    await connector.connect()
    try:
        assert sim.drop_connections("opcua") >= 1

        async def read_fails() -> bool:
            await connector.read()  # raises once the client learns of the closed socket, on its next request
            await sim.wait_updates(1)
            return False

        with pytest.raises(ConnectError):
            await wait_until(read_fails, 5, "a read to fail on the dropped connection", interval=0)
        await connector.connect()
        assert (await connector.read()).good_count == len(sim.signals(machine))
    finally:
        await connector.close()
