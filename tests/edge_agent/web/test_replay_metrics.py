"""A dashboard can follow a backlog replay: /metrics gauges and /api/state, with a real agent and Mosquitto.

The broker is stopped while the agent polls the simulated plant, a backlog builds in the outbox,
the broker comes back, and the figures must show the episode: how many entries waited, how many
were delivered, and that it ended. The replay threshold is lowered (500 entries in production) so
a few seconds of polling make an episode.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path

import aiohttp
import pytest
from prometheus_client.parser import text_string_to_metric_families

from edge_agent.commands.demo import demo_config
from edge_agent.delivery.publisher import MqttPublisher
from edge_agent.runtime.agent import Agent
from edge_agent.runtime.config import AgentConfig
from edge_agent.web import StatusServer, WebConfig
from edge_agent.web.history import HistoryBuffer
from simulators import Simulation
from tests.helpers.servers import Mosquitto
from tests.helpers.waiting import wait_until

SINK = (("sink", "mqtt"),)
THRESHOLD = 30


@pytest.fixture
async def agent(fresh_mosquitto: Mosquitto, tmp_path: Path) -> AsyncIterator[Agent]:
    async with Simulation(seed=5, update_interval=0.05) as sim:
        mqtt = {"host": fresh_mosquitto.host, "port": fresh_mosquitto.port, "keepalive": 5}
        data = demo_config(sim, mqtt=mqtt).model_dump(mode="json", exclude_unset=True)
        for machine in data["machines"]:
            machine["interval"] = "100ms"
        data["outbox"] = {"path": str(tmp_path / "outbox.sqlite")}
        running = Agent(AgentConfig.model_validate(data), extra_sinks=[HistoryBuffer()])
        assert running.publisher is not None
        running.publisher.backoff.initial, running.publisher.backoff.cap = 0.1, 0.5
        running.publisher.replay.min_entries = THRESHOLD
        stop = asyncio.Event()
        task = asyncio.create_task(running.run(stop), name="agent-under-test")
        try:
            yield running
        finally:
            stop.set()
            await asyncio.wait_for(task, 10)
        assert sim.write_count == 0


async def scrape(url: str) -> dict[str, float]:
    async with aiohttp.ClientSession() as http, http.get(url + "metrics") as response:
        text = await response.text()
    return {
        sample.name: sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
        if sample.name.startswith("edge_agent_backlog_replay") and tuple(sorted(sample.labels.items())) == SINK
    }


async def api_replay(url: str) -> object:
    async with aiohttp.ClientSession() as http, http.get(url + "api/state") as response:
        state = await response.json()
    return next(d for d in state["delivery"] if d["name"] == "mqtt")["replay"]


async def test_replay_progress_in_metrics_and_api(fresh_mosquitto: Mosquitto, agent: Agent) -> None:
    publisher = agent.publisher
    assert isinstance(publisher, MqttPublisher)
    history = next(s for s in agent.sinks if isinstance(s, HistoryBuffer))
    async with StatusServer(agent, history, WebConfig(port=0)) as server:
        await wait_until(lambda: publisher.connected and publisher.stats.published >= 5, 20, "agent publishing")
        assert await scrape(server.url) == {
            "edge_agent_backlog_replay_active": 0.0,
            "edge_agent_backlog_replay_total_entries": 0.0,
            "edge_agent_backlog_replay_done_entries": 0.0,
        }
        assert await api_replay(server.url) is None

        await asyncio.to_thread(fresh_mosquitto.stop)
        await wait_until(lambda: publisher.outbox.stats.entries >= 2 * THRESHOLD, 30, "a backlog builds")
        await asyncio.to_thread(fresh_mosquitto.start)
        await wait_until(lambda: publisher.replay.episodes == 1, 30, "the replay begins")
        total = publisher.replay.total
        assert total >= 2 * THRESHOLD

        await wait_until(lambda: not publisher.replay.active, 60, "the replay ends", detail=publisher.replay.state)
        figures = await scrape(server.url)
        replay = await api_replay(server.url)
    assert figures == {
        "edge_agent_backlog_replay_active": 0.0,
        "edge_agent_backlog_replay_total_entries": float(total),
        "edge_agent_backlog_replay_done_entries": float(total),
    }
    assert isinstance(replay, dict)
    assert (replay["active"], replay["total"], replay["done"]) == (False, total, total)
    assert replay["elapsed_s"] >= 0
    assert publisher.outbox.stats.dropped_batches == 0
