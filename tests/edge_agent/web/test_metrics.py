"""``/metrics``: Prometheus text read from the live pollers, delivery sinks, outbox and process."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path

import aiohttp
import pytest
import pytest_asyncio

from edge_agent.commands.demo import demo_config
from edge_agent.runtime.agent import Agent
from edge_agent.runtime.config import AgentConfig
from edge_agent.web import StatusServer, WebConfig
from edge_agent.web.history import HistoryBuffer
from edge_agent.web.snapshot import numeric_fields
from simulators import Simulation
from tests.helpers.servers import free_port
from tests.helpers.status_page import (
    Plant,
    Samples,
    StartServer,
    fast,
    machine,
    scrape,
)
from tests.helpers.waiting import wait_until

pytestmark = pytest.mark.asyncio(loop_scope="module")


async def test_poll_counters_move_between_scrapes(plant: Plant, start_server: StartServer) -> None:
    server = await start_server()
    first = await scrape(server.url)
    before = plant.polls()
    await wait_until(lambda: all(plant.polls()[m] > before[m] + 1 for m in before), 10, "more polls")
    second = await scrape(server.url)
    for machine_id in ("pump-1", "press-1"):
        polls = machine("edge_agent_polls_total", machine_id)
        assert second[polls] > first[polls] >= 2
        assert second[machine("edge_agent_poll_failures_total", machine_id)] == 0
        assert second[machine("edge_agent_machine_up", machine_id)] == 1
        assert 0 < second[machine("edge_agent_poll_latency_seconds", machine_id)] < 1
        assert second[machine("edge_agent_last_poll_timestamp_seconds", machine_id)] > 1.7e9
    # pump-1 is read over OPC UA (one Read call), press-1 over Modbus (one joined register read)
    assert second[machine("edge_agent_requests_per_cycle", "pump-1")] == 1
    # press-1: one read of the input registers, one of the state code in holding register 102
    assert second[machine("edge_agent_requests_per_cycle", "press-1")] == 2
    assert second[("process_resident_memory_bytes", ())] > 10e6
    assert second[("process_cpu_seconds_total", ())] > 0
    assert second[("edge_agent_history_series", ())] == sum(len(plant.tags(m)) for m in ("pump-1", "press-1"))
    assert not [name for name, _ in second if name.startswith(("edge_agent_delivery", "edge_agent_outbox"))]


@pytest_asyncio.fixture(loop_scope="module")
async def agent_with_absent_broker(sim: Simulation, tmp_path: Path) -> AsyncIterator[Agent]:
    """The agent publishing to a port where no broker listens: batches wait in the outbox."""
    data = fast(demo_config(sim, mqtt={"host": "127.0.0.1", "port": free_port()})).model_dump(mode="json")
    data["outbox"] = {"path": str(tmp_path / "outbox.sqlite")}
    agent = Agent(AgentConfig.model_validate(data), extra_sinks=[HistoryBuffer()])
    stop = asyncio.Event()
    task = asyncio.create_task(agent.run(stop), name="test-agent-mqtt")
    yield agent
    stop.set()
    await asyncio.wait_for(task, 10)


async def test_delivery_figures_and_a_missing_broker(agent_with_absent_broker: Agent) -> None:
    agent = agent_with_absent_broker
    history = next(s for s in agent.sinks if isinstance(s, HistoryBuffer))
    waiting = ("edge_agent_outbox_entries", (("sink", "mqtt"),))
    async with StatusServer(agent, history, WebConfig(port=0)) as server:
        samples: Samples = {}

        async def backlog() -> None:
            while samples.get(waiting, 0) < 3:
                samples.update(await scrape(server.url))

        await asyncio.wait_for(backlog(), 15)
        async with aiohttp.ClientSession() as http, http.get(server.url + "api/state") as response:
            delivery = (await response.json())["delivery"]
        live = numeric_fields(agent.publisher.stats if agent.publisher else None)
    assert samples[("edge_agent_delivery_connected", (("sink", "mqtt"),))] == 0
    for field, value in live.items():  # every counter of the publisher, as it was at the scrape
        assert samples[(f"edge_agent_delivery_{field}_total", (("sink", "mqtt"),))] <= value
    assert [d["name"] for d in delivery] == ["mqtt"]
    assert delivery[0]["connected"] is False
    assert delivery[0]["target"].startswith("127.0.0.1:")
    assert delivery[0]["outbox"]["stats"]["entries"] >= 3
    assert delivery[0]["outbox"]["oldest_age_s"] >= 0
