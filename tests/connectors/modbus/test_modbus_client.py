"""The Modbus connector against the simulator's real Modbus TCP server."""

from __future__ import annotations

import pytest

from connectors.base import Connector
from connectors.modbus.client import ModbusConnector
from connectors.modbus.config import ModbusMachine
from edge_agent.core.connection import ConnectionState
from edge_agent.core.errors import ConnectError
from edge_agent.core.samples import Quality, Sample
from simulators import Simulation
from tests.helpers.servers import free_port
from tests.helpers.simconfig import modbus_machine


def state_now(connector: Connector) -> ConnectionState:
    """The connector's state read afresh: mypy keeps an earlier ``is`` narrowing across the awaits that change it."""
    return connector.state


def update_matching(sim: Simulation, machine: str, samples: dict[str, Sample], names: list[str]) -> int:
    """The timestamp of the one served update whose float32 values all equal the samples; fails if none."""
    candidates: set[int] | None = None
    for name in names:
        times = {ts for ts, value in sim.served("modbus", machine, name) if value == samples[name].value}
        candidates = times if candidates is None else candidates & times
    assert candidates, "no single served update matches every float32 value read"
    return max(candidates)


@pytest.mark.parametrize("tcp_client", ["lean", "pymodbus"])
async def test_float32_inputs_equal_what_was_served(modbus_sim: Simulation, tcp_client: str) -> None:
    sim = modbus_sim
    machine = sim.machine_ids[0]
    names = [name for name, _ in sim.signals(machine)]
    connector = ModbusConnector(modbus_machine(sim, machine, tcp_client=tcp_client))
    await connector.connect()
    try:
        for _ in range(3):
            await sim.wait_updates(1)
            batch = await connector.read()
            samples = {s.tag: s for s in batch.samples}
            assert all(s.quality is Quality.GOOD for s in batch.samples), batch
            assert all(isinstance(samples[n].value, float) for n in names)
            served_at = update_matching(sim, machine, samples, names)
            assert served_at <= samples[names[0]].timestamp_ns  # the answer arrives after the update
    finally:
        await connector.close()
    assert sim.write_count == 0


async def test_holding_int16_scaled_and_counters(modbus_sim: Simulation) -> None:
    sim = modbus_sim
    machine = sim.machine_ids[0]
    connector = ModbusConnector(modbus_machine(sim, machine))
    await connector.connect()
    try:
        batch = await connector.read()
    finally:
        await connector.close()
    samples = {s.tag: s for s in batch.samples}
    for name, _ in sim.signals(machine):
        scaled = samples[f"{name}_x10"].value
        assert isinstance(scaled, float)
        assert scaled * 10 == pytest.approx(round(scaled * 10), abs=1e-6)  # a tenth, as the device stores it
        served = [value for _, value in sim.served("modbus", machine, name)]
        assert any(abs(value - scaled) <= 0.05 + 1e-6 for value in served), (name, scaled)
    assert isinstance(samples["parts_count"].value, int)
    assert samples["state_code"].value in range(16)
    assert connector.requests_per_cycle == 3  # holding 0..n, holding 100..102, input 0..2n


@pytest.mark.parametrize("tcp_client", ["lean", "pymodbus"])
async def test_address_beyond_the_map_marks_exactly_those_tags_bad(modbus_sim: Simulation, tcp_client: str) -> None:
    sim = modbus_sim
    machine = sim.machine_ids[0]
    extra = [
        {"name": "just_past_the_end", "table": "holding", "address": 103},  # joins the 100..102 read
        {"name": "far_away", "table": "holding", "address": 5000, "type": "float32"},
        {"name": "past_inputs", "table": "input", "address": 1000},
    ]
    connector = ModbusConnector(modbus_machine(sim, machine, extra_tags=extra, tcp_client=tcp_client))
    await connector.connect()
    try:
        for _ in range(2):  # the first poll learns to split the rejected joined read; the second uses it
            batch = await connector.read()
            bad = {s.tag: s.reason for s in batch.samples if s.quality is Quality.BAD}
            assert bad == dict.fromkeys(
                ["just_past_the_end", "far_away", "past_inputs"], "Modbus exception 2: illegal data address"
            )
            assert all(s.value is not None for s in batch.samples if s.tag not in bad)
        # holding 0..n, 100-101, 102, 103, 5000; input 0..2n, 1000: the 100..103 read was split.
        assert connector.requests_per_cycle == 7
    finally:
        await connector.close()
    assert sim.write_count == 0


async def test_unknown_unit_id_is_a_per_request_error(modbus_sim: Simulation) -> None:
    sim = modbus_sim
    machine = sim.machine_ids[0]
    connector = ModbusConnector(modbus_machine(sim, machine, unit_id=0))
    await connector.connect()
    try:
        batch = await connector.read()
    finally:
        await connector.close()
    assert {s.quality for s in batch.samples} == {Quality.BAD}
    assert {s.reason for s in batch.samples} == {"Modbus exception 11: gateway target device failed to respond"}


async def test_device_down_at_connect_raises_connect_error() -> None:
    config = ModbusMachine.model_validate(
        {
            "type": "modbus",
            "id": "m-down",
            "host": "127.0.0.1",
            "port": free_port(),
            "tags": [{"name": "a", "address": 0}],
        }
    )
    connector = ModbusConnector(config)
    with pytest.raises(ConnectError, match="m-down"):
        await connector.connect()
    assert connector.state is ConnectionState.DOWN
    with pytest.raises(ConnectError):
        await connector.read()
    await connector.close()
    await connector.close()
    assert state_now(connector) is ConnectionState.CLOSED
