"""Every float32 byte order a PLC may use, served by the simulator and read back exactly.

The simulator lays its input registers out in the order it is told; the connector, told the
same order, must decode exactly the value served, and told the wrong one, must not.
"""

from __future__ import annotations

import pytest

from connectors.modbus.config import ModbusMachine
from edge_agent.core.samples import Quality
from simulators import Simulation
from simulators.errors import SimulatorError


def machine(sim: Simulation, byte_order: str) -> ModbusMachine:
    return ModbusMachine.model_validate(
        {
            "type": "modbus",
            "id": "pump-1",
            "host": "127.0.0.1",
            "port": sim.modbus.port,
            "unit_id": sim.modbus.unit_id("pump-1"),
            "interval": "3s",
            "tags": [
                {"name": name, "table": "input", "address": 2 * i, "type": "float32", "byte_order": byte_order}
                for i, (name, _unit) in enumerate(sim.signals("pump-1"))
            ],
        }
    )


@pytest.mark.parametrize("order", ["ABCD", "CDAB", "BADC", "DCBA"])
async def test_each_byte_order_reads_exactly_what_was_served(order: str) -> None:
    async with Simulation(
        seed=2, machines=["pump-1"], update_interval=0.05, opcua_port=None, modbus_byte_order=order
    ) as sim:
        await sim.wait_updates(2)
        connector = machine(sim, order).build_connector()
        await connector.connect()
        try:
            batch = await connector.read()
        finally:
            await connector.close()
        for sample in batch.samples:
            assert sample.quality is Quality.GOOD
            served = {value for _, value in sim.served("modbus", "pump-1", sample.tag)}
            assert sample.value in served, f"{sample.tag} = {sample.value} in {order}"


async def test_the_wrong_byte_order_does_not_give_the_served_values() -> None:
    async with Simulation(
        seed=2, machines=["pump-1"], update_interval=0.05, opcua_port=None, modbus_byte_order="CDAB"
    ) as sim:
        await sim.wait_updates(2)
        connector = machine(sim, "ABCD").build_connector()
        await connector.connect()
        try:
            batch = await connector.read()
        finally:
            await connector.close()
        wrong = [s for s in batch.samples if s.value not in {v for _, v in sim.served("modbus", "pump-1", s.tag)}]
        assert wrong, "a CDAB device read as ABCD must not look right"


def test_an_unknown_byte_order_is_refused_with_the_fix() -> None:
    with pytest.raises(SimulatorError, match="ABCD"):
        Simulation(opcua_port=None, modbus_byte_order="ACBD")
