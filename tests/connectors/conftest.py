"""A running simulator per test: real servers on ephemeral loopback ports, only the protocol needed."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest

from simulators import Simulation


@pytest.fixture
async def opcua_sim() -> AsyncIterator[Simulation]:
    """The simulator with only its OPC UA server."""
    async with Simulation(seed=1, update_interval=0.1, modbus_port=None) as simulation:
        yield simulation
    assert simulation.write_count == 0, "a connector sent a write request to the simulator"


@pytest.fixture
async def modbus_sim() -> AsyncIterator[Simulation]:
    """The simulator with only its Modbus server."""
    async with Simulation(seed=1, update_interval=0.1, opcua_port=None) as simulation:
        yield simulation
    assert simulation.write_count == 0, "a connector sent a write request to the simulator"
