"""Shared fixtures: a running default plant on loopback, ephemeral ports."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest

from simulators import Simulation


@pytest.fixture
async def sim() -> AsyncIterator[Simulation]:
    async with Simulation(seed=1, update_interval=0.05) as running:
        yield running


@pytest.fixture
async def modbus_sim() -> AsyncIterator[Simulation]:
    """Modbus only: starts in milliseconds (asyncua's address space takes about a second)."""
    async with Simulation(seed=1, update_interval=0.05, opcua_port=None) as running:
        yield running
