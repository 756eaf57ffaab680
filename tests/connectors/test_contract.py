"""What every registered connector must do, run over each protocol in the registry.

Created closed; connect → up; a read gives one batch of this machine with UTC nanosecond
timestamps; close is idempotent and never raises; a read after the server went away raises a
``ConnectorError``; after the server is back on the same port, connect and read work again.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from typing import Any

import pytest

from connectors import MACHINE_TYPES
from connectors.base import Connector
from edge_agent.core.connection import ConnectionState
from edge_agent.core.errors import ConnectorError
from edge_agent.core.samples import Quality
from simulators import Simulation
from tests.helpers.simconfig import modbus_machine, opcua_machine

ConfigFor = Callable[[Simulation, str], Any]

VARIANTS: dict[str, tuple[str, ConfigFor]] = {
    "opcua": ("opcua", opcua_machine),
    "opcua-subscribe": ("opcua", lambda sim, machine: opcua_machine(sim, machine, mode="subscribe", interval="200ms")),
    "modbus": ("modbus", modbus_machine),
}


def test_every_registered_protocol_is_covered() -> None:
    assert {protocol for protocol, _ in VARIANTS.values()} == set(MACHINE_TYPES)


@asynccontextmanager
async def simulation(protocol: str, port: int = 0) -> AsyncIterator[Simulation]:
    opcua_port, modbus_port = (port, None) if protocol == "opcua" else (None, port)
    async with Simulation(seed=1, update_interval=0.1, opcua_port=opcua_port, modbus_port=modbus_port) as sim:
        yield sim
    assert sim.write_count == 0


def port_of(sim: Simulation, protocol: str) -> int:
    return sim.opcua.port if protocol == "opcua" else sim.modbus.port


def state_now(connector: Connector) -> ConnectionState:
    """The connector's state read afresh: mypy keeps an earlier ``is`` narrowing across the awaits that change it."""
    return connector.state


async def assert_sane_batches(connector: Connector, tag_names: list[str]) -> None:
    """Read until every tag has a sample (a subscription delivers in the background), checking each batch."""
    seen: set[str] = set()
    for _ in range(50):
        batch = await connector.read()
        assert batch.machine == connector.machine_id
        now = time.time_ns()
        for sample in batch.samples:
            assert sample.quality is Quality.GOOD, sample
            assert isinstance(sample.timestamp_ns, int)
            assert now - 60 * 10**9 < sample.timestamp_ns <= now + 10**9, "timestamp is not UTC nanoseconds of now"
            seen.add(sample.tag)
        if seen == set(tag_names):
            return
        await asyncio.sleep(0.1)
    raise AssertionError(f"tags never read: {sorted(set(tag_names) - seen)}")


async def read_until_it_fails(connector: Connector) -> ConnectorError:
    """A read that raises, within 10 s (a subscription notices a dead link on its own schedule)."""
    for _ in range(100):
        try:
            await connector.read()
        except ConnectorError as exc:
            return exc
        await asyncio.sleep(0.1)
    raise AssertionError("read() kept succeeding after the server went away")


@pytest.mark.parametrize("variant", sorted(VARIANTS))
async def test_lifecycle_and_recovery(variant: str) -> None:
    protocol, config_for = VARIANTS[variant]
    async with simulation(protocol) as sim:
        machine = sim.machine_ids[0]
        config = config_for(sim, machine)
        names = [tag.name for tag in config.tags]
        connector: Connector = config.build_connector()
        port = port_of(sim, protocol)
        assert connector.state is ConnectionState.CLOSED
        await connector.close()  # closing a connector that never connected is fine
        await connector.connect()
        assert state_now(connector) is ConnectionState.UP
        await assert_sane_batches(connector, names)
    # The server is gone (its connections are closed): reads fail as a whole.
    await read_until_it_fails(connector)
    assert state_now(connector) is ConnectionState.DOWN
    with pytest.raises(ConnectorError):
        await connector.connect()
    assert state_now(connector) is ConnectionState.DOWN
    async with simulation(protocol, port) as sim:
        await connector.connect()
        assert state_now(connector) is ConnectionState.UP
        await assert_sane_batches(connector, names)
        await connector.close()
        await connector.close()
        assert state_now(connector) is ConnectionState.CLOSED
        with pytest.raises(ConnectorError):
            await connector.read()
        assert state_now(connector) is ConnectionState.CLOSED
        assert sim.write_count == 0
