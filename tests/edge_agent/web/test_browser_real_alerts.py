"""The student's path in a real browser, with the real alert engine (no stand-in).

The agent runs with ``alerts:`` on (short windows, a normal learned in 20 s of wall-clock
time instead of the demo's 150 s), the page is opened in headless Chromium, a fault is injected
through the page's own control, and the alert the engine raises shows up explained; it is
acknowledged from the page, and clears after "(clear faults)".
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from playwright.async_api import expect

from edge_agent.commands.demo import CLEAR_FAULTS, DEMO_ALERTS, demo_config, fault_control
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
    machine,
    scrape,
)
from tests.helpers.waiting import wait_until

WAIT_MS = 60_000


@pytest.fixture
async def running(tmp_path: Path) -> AsyncIterator[tuple[Simulation, Agent, StatusServer]]:
    async with Simulation(seed=21, update_interval=0.05) as sim:
        alerts = {
            **DEMO_ALERTS,
            "window": "1s",
            "hop": "0.5s",
            "learn_after": "20s",
            "cooldown": "0s",
            "clear_after": 3,
            "data_dir": str(tmp_path / "models"),
            "machines": {"press-1": {"enabled": False}},  # 20 s cannot cover the press's slow cycle
        }
        data = demo_config(sim, alerts=alerts).model_dump(mode="json", exclude_unset=True)
        for machine in data["machines"]:
            machine["interval"] = "100ms"
        history = HistoryBuffer()
        agent = Agent(AgentConfig.model_validate(data), extra_sinks=[history])

        inject, choices = fault_control(sim)
        server = StatusServer(
            agent,
            history,
            WebConfig(port=0),
            alerts=agent.alert_board,
            inject_fault=inject,
            fault_choices=choices,
            update_interval=0.25,
        )
        stop = asyncio.Event()
        task = asyncio.create_task(agent.run(stop), name="agent-under-test")
        await server.start()
        try:
            yield sim, agent, server
        finally:
            await server.close()
            stop.set()
            await asyncio.wait_for(task, 10)
        assert sim.write_count == 0


async def test_student_injects_a_fault_and_sees_the_real_alert(
    running: tuple[Simulation, Agent, StatusServer],
) -> None:
    from playwright.async_api import async_playwright

    sim, agent, server = running
    assert agent.alerts is not None
    engine = agent.alerts
    await wait_until(
        lambda: engine.stats("pump-1").learned, 60, "pump-1 learned", detail=lambda: engine.stats("pump-1")
    )
    async with async_playwright() as playwright:
        browser = await playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        try:
            page = await (await browser.new_context(viewport=PANEL)).new_page()
            await page.goto(server.url)
            await expect(page.locator("#link")).to_have_text("live", timeout=15_000)
            await expect(page.locator("#no-alerts")).to_be_visible()
            await page.select_option("#inject-machine", "pump-1")
            await page.select_option("#inject-fault", "imbalance")
            await page.click("#inject-button")

            alert = page.locator('#active-alerts li.alert[data-machine="pump-1"]')
            await expect(alert).to_have_count(1, timeout=WAIT_MS)
            await expect(alert.locator(".signals li").first).to_contain_text("vibration_rms")
            await expect(alert.locator(".hint dt").first).to_have_text("Likely cause")
            ARTIFACTS.mkdir(exist_ok=True)
            await page.screenshot(path=ARTIFACTS / "status-page-real-alert-1024x600.png")

            await page.fill("#ack-by", "Ana (maintenance)")
            await alert.locator("button.ack").click()
            await expect(alert.locator(".acked")).to_contain_text("Ana (maintenance)", timeout=15_000)

            await page.select_option("#inject-fault", CLEAR_FAULTS)
            await page.click("#inject-button")
            await expect(alert).to_have_count(0, timeout=WAIT_MS)
            await expect(page.locator("#no-alerts")).to_be_visible()
        finally:
            await browser.close()
    assert [f for f in sim.ground_truth() if f.end_s is None] == []

    # /metrics tells the same story to Prometheus: one alert raised, acknowledged and cleared on
    # pump-1; its model ready with a score against its threshold; press-1 has no model.
    metrics = await scrape(server.url)
    for kind in ("raised", "acknowledged", "cleared"):
        assert metrics[("edge_agent_alert_events_total", (("event", kind), ("machine", "pump-1")))] >= 1, kind
    assert metrics[machine("edge_agent_model_ready", "pump-1")] == 1
    assert metrics[machine("edge_agent_model_ready", "press-1")] == 0
    assert metrics[machine("edge_agent_model_windows_scored_total", "pump-1")] > 0
    latest = engine.last_assessment("pump-1")
    assert latest is not None
    assert metrics[machine("edge_agent_anomaly_threshold", "pump-1")] == pytest.approx(latest.threshold)
    assert metrics[machine("edge_agent_anomaly_score", "pump-1")] >= 0
    assert machine("edge_agent_anomaly_score", "press-1") not in metrics
