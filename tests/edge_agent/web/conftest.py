"""Fixtures of the status page tests; the plant, the stand-in alert engine and the browser settings
live in tests/helpers/status_page.py.

The simulation is shared by the tests of a module (its OPC UA server takes seconds to start),
so every test module runs in one event loop: ``pytestmark = pytest.mark.asyncio(loop_scope="module")``.
Each test gets its own agent, history and server; faults are cleared after each test.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any

import pytest_asyncio

from edge_agent.commands.demo import demo_config
from edge_agent.runtime.agent import Agent
from edge_agent.web import StatusServer, WebConfig
from edge_agent.web.history import HistoryBuffer
from simulators import Simulation
from tests.helpers.status_page import Plant, StartServer, fast
from tests.helpers.waiting import wait_until


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def sim() -> AsyncIterator[Simulation]:
    """One simulated plant per test module: starting the OPC UA server takes about 2 s."""
    async with Simulation(seed=3, update_interval=0.05) as simulation:
        yield simulation
        assert simulation.write_count == 0


@pytest_asyncio.fixture(loop_scope="module")
async def plant(sim: Simulation) -> AsyncIterator[Plant]:
    """A fresh agent (and history) per test against the module's simulation; faults cleared after."""
    history = HistoryBuffer()
    agent = Agent(fast(demo_config(sim)), extra_sinks=[history])
    stop = asyncio.Event()
    task = asyncio.create_task(agent.run(stop), name="test-agent")
    running = Plant(sim, agent, history)
    try:
        await wait_until(
            lambda: all(n >= 2 for n in running.polls().values()),
            15,
            "two polls of every machine",
            detail=running.polls,
        )
        yield running
    finally:
        stop.set()
        await asyncio.wait_for(task, 10)
        for machine in sim.machine_ids:
            sim.clear_fault(machine)


@pytest_asyncio.fixture(loop_scope="module")
async def start_server(plant: Plant) -> AsyncIterator[StartServer]:
    """Start a StatusServer on a free port with the given WebConfig keys; closed at teardown."""
    servers: list[StatusServer] = []

    async def start(
        alerts: Any = None,
        inject: bool = False,
        fault_choices: dict[str, list[str]] | None = None,
        update_interval: float = 0.25,
        **web: Any,
    ) -> StatusServer:
        config = WebConfig.model_validate({"port": 0, **web})
        server = StatusServer(
            plant.agent,
            plant.history,
            config,
            alerts=alerts,
            inject_fault=plant.inject if inject else None,
            fault_choices=(fault_choices or plant.fault_choices()) if inject else None,
            update_interval=update_interval,
        )
        await server.start()
        servers.append(server)
        return server

    yield start
    for server in servers:
        await server.close()
