"""The runtime against real simulators: machines that fail, brokers that are away, clean shutdown."""

from __future__ import annotations

import asyncio
import io
import json
import logging
from collections.abc import AsyncIterator
from typing import Any

import paho.mqtt.client as mqtt
import pytest
from paho.mqtt.enums import CallbackAPIVersion

from edge_agent.commands.demo import demo_config
from edge_agent.commands.live_view import LiveView
from edge_agent.core.connection import ConnectionState
from edge_agent.runtime.agent import Agent
from edge_agent.runtime.config import AgentConfig
from simulators import Simulation
from tests.helpers.servers import Mosquitto, free_port, unique_name
from tests.helpers.waiting import wait_until


@pytest.fixture
async def sim() -> AsyncIterator[Simulation]:
    async with Simulation(seed=3, update_interval=0.05) as simulation:
        yield simulation


def fast(config: AgentConfig, **mqtt: Any) -> AgentConfig:
    """The demo config with 200 ms polls (and an MQTT section when given)."""
    data = config.model_dump(mode="json", exclude_unset=True)
    for machine in data["machines"]:
        machine["interval"] = 0.2
    if mqtt:
        data["mqtt"] = mqtt
    return AgentConfig.model_validate(data)


def states(agent: Agent) -> str:
    """Every poller's stats, for failure messages."""
    return "\n".join(f"{p.machine.id}: {p.stats}" for p in agent.pollers)


async def start(agent: Agent) -> tuple[asyncio.Event, asyncio.Task[None]]:
    stop = asyncio.Event()
    return stop, asyncio.create_task(agent.run(stop), name="test-agent")


async def test_polls_every_machine_and_never_writes(sim: Simulation) -> None:
    view = LiveView(io.StringIO())
    agent = Agent(fast(demo_config(sim)), extra_sinks=[view])
    stop, task = await start(agent)
    await wait_until(
        lambda: all(p.stats.polls >= 5 for p in agent.pollers),
        15,
        "5 polls of every machine",
        detail=lambda: states(agent),
    )
    stop.set()
    await asyncio.wait_for(task, 5)
    assert set(view.latest) == {"pump-1", "press-1"}
    for batch in view.latest.values():
        assert batch.good_count == len(batch.samples) > 0
    assert sim.write_count == 0


async def test_unreachable_machine_is_reported_down_and_the_others_go_on(
    sim: Simulation, caplog: pytest.LogCaptureFixture
) -> None:
    data = fast(demo_config(sim)).model_dump(mode="json", exclude_unset=True)
    ghost = dict(data["machines"][1], id="ghost-1", port=free_port())
    data["machines"].append(ghost)
    agent = Agent(AgentConfig.model_validate(data), extra_sinks=[LiveView(io.StringIO())])
    for poller in agent.pollers:
        poller.backoff.initial, poller.backoff.cap = 0.05, 0.2
    caplog.set_level(logging.INFO)
    stop, task = await start(agent)
    ghost_poller = next(p for p in agent.pollers if p.machine.id == "ghost-1")
    await wait_until(lambda: ghost_poller.stats.failures >= 3, 15, "three failed connection attempts to ghost-1")
    await wait_until(
        lambda: all(p.stats.polls >= 5 for p in agent.pollers if p is not ghost_poller),
        15,
        "others poll",
        detail=lambda: states(agent),
    )
    stop.set()
    await asyncio.wait_for(task, 5)
    assert ghost_poller.stats.state in (ConnectionState.DOWN, ConnectionState.CLOSED)
    assert ghost_poller.stats.last_error
    down_lines = [r for r in caplog.records if "ghost-1: down" in r.getMessage()]
    assert len(down_lines) == 1, "a machine that stays down is logged once, not per attempt"


async def test_machine_that_comes_back_is_polled_again(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO)
    port = free_port()
    async with Simulation(seed=4, update_interval=0.05, opcua_port=None, modbus_port=port) as sim:
        config = fast(demo_config(sim, use_opcua=False))
        agent = Agent(config, extra_sinks=[])
        for poller in agent.pollers:
            poller.backoff.initial, poller.backoff.cap = 0.05, 0.3
        stop, task = await start(agent)
        await wait_until(
            lambda: all(p.stats.polls >= 2 for p in agent.pollers), 15, "first polls", detail=lambda: states(agent)
        )
    before = {p.machine.id: p.stats.polls for p in agent.pollers}
    await wait_until(lambda: all(p.stats.state is ConnectionState.DOWN for p in agent.pollers), 15, "all down")
    async with Simulation(seed=4, update_interval=0.05, opcua_port=None, modbus_port=port):
        await wait_until(
            lambda: all(p.stats.polls >= before[p.machine.id] + 3 for p in agent.pollers), 20, "polls resume"
        )
    stop.set()
    await asyncio.wait_for(task, 5)
    assert any("recovered after" in r.getMessage() for r in caplog.records)


async def test_broker_unreachable_at_start_keeps_polling_then_publishes(
    sim: Simulation, tmp_path: Any, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO)
    broker = Mosquitto(tmp_path / "mosquitto").start()
    port = broker.port
    broker.stop()  # the broker will come back later on the same port
    prefix = unique_name("edge")
    agent = Agent(fast(demo_config(sim), host="127.0.0.1", port=port, topic_prefix=prefix))
    stop, task = await start(agent)
    try:
        await wait_until(
            lambda: all(p.stats.polls >= 3 for p in agent.pollers),
            15,
            "polling without a broker",
            detail=lambda: states(agent),
        )
        assert agent.publisher is not None
        assert not agent.publisher.connected
        assert any("MQTT: broker" in r.getMessage() and "down" in r.getMessage() for r in caplog.records)
        broker.start()
        received: list[dict[str, Any]] = []
        subscriber = mqtt.Client(callback_api_version=CallbackAPIVersion.VERSION2)
        subscriber.on_message = lambda _c, _u, m: received.append(json.loads(m.payload))
        subscriber.connect("127.0.0.1", port)
        subscriber.subscribe(f"{prefix}/#", qos=1)
        subscriber.loop_start()
        try:
            await wait_until(lambda: agent.publisher is not None and agent.publisher.connected, 40, "broker connect")
            await wait_until(lambda: any("samples" in m for m in received), 15, "telemetry on the broker")
        finally:
            subscriber.loop_stop()
            subscriber.disconnect()
    finally:
        stop.set()
        await asyncio.wait_for(task, 5)
        broker.close()


async def test_clean_shutdown_within_five_seconds(sim: Simulation) -> None:
    agent = Agent(fast(demo_config(sim)))
    stop, task = await start(agent)
    await wait_until(
        lambda: all(p.stats.polls >= 1 for p in agent.pollers), 15, "first polls", detail=lambda: states(agent)
    )
    stop.set()
    await asyncio.wait_for(task, 5)  # the timeout is the check: a stop that hangs fails here
    assert all(p.stats.state is ConnectionState.CLOSED for p in agent.pollers)
