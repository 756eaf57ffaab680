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
from connectors.base import ConnectionState, Connector
from edge_agent.errors import ConnectorError
from edge_agent.samples import Quality
from simulators import Simulation
from tests.connectors.simconfig import modbus_machine, opcua_machine

ConfigFor = Callable[[Simulation, str], Any]

CONFIGS: dict[str, ConfigFor] = {
    "opcua": opcua_machine,
    "modbus": modbus_machine,
}


def test_every_registered_protocol_is_covered() -> None:
    assert set(CONFIGS) == set(MACHINE_TYPES)


@asynccontextmanager
async def simulation(protocol: str, port: int = 0) -> AsyncIterator[Simulation]:
    opcua_port, modbus_port = (port, None) if protocol == "opcua" else (None, port)
    async with Simulation(seed=1, update_interval=0.1, opcua_port=opcua_port, modbus_port=modbus_port) as sim:
        yield sim
    assert sim.write_count == 0


def port_of(sim: Simulation, protocol: str) -> int:
    return sim.opcua.port if protocol == "opcua" else sim.modbus.port


def assert_sane_batch(connector: Connector, batch: Any, tag_count: int) -> None:
    assert batch.machine == connector.machine_id
    assert len(batch.samples) == tag_count
    now = time.time_ns()
    for sample in batch.samples:
        assert sample.quality is Quality.GOOD, sample
        assert isinstance(sample.timestamp_ns, int)
        assert now - 60 * 10**9 < sample.timestamp_ns <= now + 10**9, "timestamp is not UTC nanoseconds of now"


@pytest.mark.parametrize("protocol", sorted(CONFIGS))
async def test_lifecycle_and_recovery(protocol: str) -> None:
    async with simulation(protocol) as sim:
        machine = sim.machine_ids[0]
        config = CONFIGS[protocol](sim, machine)
        connector: Connector = config.build_connector()
        port = port_of(sim, protocol)
        assert connector.state is ConnectionState.CLOSED
        await connector.close()  # closing a connector that never connected is fine
        await connector.connect()
        assert connector.state is ConnectionState.UP
        assert_sane_batch(connector, await connector.read(), len(config.tags))
    # The server is gone (its connections are closed): the next read fails as a whole.
    with pytest.raises(ConnectorError):
        async with asyncio.timeout(10):
            await connector.read()
    assert connector.state is ConnectionState.DOWN
    with pytest.raises(ConnectorError):
        await connector.connect()
    assert connector.state is ConnectionState.DOWN
    async with simulation(protocol, port) as sim:
        await connector.connect()
        assert connector.state is ConnectionState.UP
        assert_sane_batch(connector, await connector.read(), len(config.tags))
        await connector.close()
        await connector.close()
        assert connector.state is ConnectionState.CLOSED
        with pytest.raises(ConnectorError):
            await connector.read()
        assert connector.state is ConnectionState.CLOSED
        assert sim.write_count == 0
