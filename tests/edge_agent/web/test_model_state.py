"""Model state per machine on the status page: "learning n/m windows" while the normal is learned, then
"ready, model <version>, trained <time>", in /api/state and in real headless Chromium.

The real alert engine learns pump-1 in 20 s of wall-clock time (1 s windows every 0.5 s: 40
windows); press-1 has alerts off and says so. No stand-in for the engine.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import re
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from playwright.async_api import expect

from edge_agent.commands.demo import DEMO_ALERTS, demo_config
from edge_agent.runtime.agent import Agent
from edge_agent.runtime.config import AgentConfig
from edge_agent.web import StatusServer, WebConfig
from edge_agent.web.history import HistoryBuffer
from simulators import Simulation
from tests.helpers.status_page import (
    ARTIFACTS,
    CHROMIUM,
    CHROMIUM_ARGS,
    PANEL,
    PHONE,
    machine,
    scrape,
)
from tests.helpers.waiting import wait_until

NEEDED = 40  # learn_after 20 s / hop 0.5 s


@pytest.fixture
async def running(tmp_path: Path) -> AsyncIterator[tuple[Agent, StatusServer]]:
    async with Simulation(seed=21, update_interval=0.05) as sim:
        alerts = {
            **DEMO_ALERTS,
            "window": "1s",
            "hop": "0.5s",
            "learn_after": "20s",
            "data_dir": str(tmp_path / "models"),
            "machines": {"press-1": {"enabled": False}},
        }
        data = demo_config(sim, alerts=alerts).model_dump(mode="json", exclude_unset=True)
        for machine in data["machines"]:
            machine["interval"] = "100ms"
        history = HistoryBuffer()
        agent = Agent(AgentConfig.model_validate(data), extra_sinks=[history])
        server = StatusServer(agent, history, WebConfig(port=0), alerts=agent.alert_board, update_interval=0.25)
        stop = asyncio.Event()
        task = asyncio.create_task(agent.run(stop), name="agent-under-test")
        await server.start()
        try:
            yield agent, server
        finally:
            await server.close()
            stop.set()
            await asyncio.wait_for(task, 10)


async def models(server: StatusServer) -> dict[str, dict[str, Any]]:
    async with aiohttp.ClientSession() as http, http.get(server.url + "api/state") as response:
        assert response.status == 200
        state = await response.json()
    return {m["id"]: m["model"] for m in state["machines"]}


async def test_page_shows_learning_then_ready_with_version_and_training_time(
    running: tuple[Agent, StatusServer],
) -> None:
    from playwright.async_api import async_playwright

    agent, server = running
    assert agent.alerts is not None
    engine = agent.alerts
    await wait_until(lambda: 0 < engine.stats("pump-1").training_windows < NEEDED - 5, 30, "pump-1 learning")
    learning = await models(server)
    pump = learning["pump-1"]
    assert pump["state"] == "learning"
    assert pump["needed"] == NEEDED
    assert 0 < pump["windows"] < NEEDED
    assert (pump["version"], pump["trained"], pump["retrains"], pump["pinned"]) == (None, None, 0, False)
    assert learning["press-1"]["state"] == "off"
    # /metrics shows the same progress, by the same rule.
    metrics = await scrape(server.url)
    assert metrics[machine("edge_agent_model_learning_windows_needed", "pump-1")] == NEEDED
    assert 0 < metrics[machine("edge_agent_model_learning_windows", "pump-1")] <= NEEDED

    async with async_playwright() as playwright:
        browser = await playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        try:
            page = await (await browser.new_context(viewport=PANEL)).new_page()
            await page.goto(server.url)
            await expect(page.locator("#link")).to_have_text("live", timeout=15_000)
            pump_model = page.locator('article.machine[data-machine="pump-1"] .model')
            await expect(pump_model).to_have_text(re.compile(rf"^learning \d+/{NEEDED} windows \(\d+ %\)$"))
            await expect(page.locator('article.machine[data-machine="press-1"] .model')).to_have_text(
                "alerts off for this machine"
            )
            shown = re.match(r"learning (\d+)/", await pump_model.inner_text())
            assert shown is not None
            assert 0 < int(shown[1]) < NEEDED
            ARTIFACTS.mkdir(exist_ok=True)
            await page.screenshot(path=ARTIFACTS / "status-page-model-learning-1024x600.png")

            await wait_until(lambda: engine.stats("pump-1").learned, 60, "pump-1 learned")
            version = engine.stats("pump-1").model_version
            await expect(pump_model).to_have_text(
                re.compile(rf"^ready, model {version}, trained \d\d:\d\d:\d\d"), timeout=15_000
            )
            box = await page.locator('article.machine[data-machine="pump-1"]').bounding_box()
            assert box is not None
            assert box["x"] + box["width"] <= PANEL["width"], "the card fits the 1024x600 panel"
            await page.screenshot(path=ARTIFACTS / "status-page-model-ready-1024x600.png")

            phone = await (await browser.new_context(viewport=PHONE)).new_page()
            await phone.goto(server.url)
            phone_model = phone.locator('article.machine[data-machine="pump-1"] .model')
            await expect(phone_model).to_have_text(re.compile(rf"^ready, model {version}, trained "), timeout=15_000)
            line = await phone_model.bounding_box()
            assert line is not None
            assert line["x"] + line["width"] <= PHONE["width"], "no sideways scrolling on a phone"
            await phone.screenshot(path=ARTIFACTS / "status-page-model-ready-phone.png")
        finally:
            await browser.close()

    ready = (await models(server))["pump-1"]
    assert ready["state"] == "ready"
    assert ready["version"] == version
    assert ready["windows"] == NEEDED
    metrics = await scrape(server.url)
    assert metrics[machine("edge_agent_model_learning_windows", "pump-1")] == NEEDED
    trained = dt.datetime.fromtimestamp(ready["trained"] / 1000, dt.UTC)
    assert abs((dt.datetime.now(dt.UTC) - trained).total_seconds()) < 120, "trained just now (wall clock)"


async def test_without_an_alert_engine_the_model_is_null(tmp_path: Path) -> None:
    async with Simulation(seed=4, update_interval=0.05) as sim:
        agent = Agent(demo_config(sim), extra_sinks=[HistoryBuffer()])
        assert agent.alerts is None
        history = next(s for s in agent.sinks if isinstance(s, HistoryBuffer))
        async with StatusServer(agent, history, WebConfig(port=0)) as server:
            assert set((await models(server)).values()) == {None}
