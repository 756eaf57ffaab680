"""The status page in a real headless Chromium (Debian's ``chromium``, driven by Playwright).

The page must work offline (every request goes to the agent itself), show both machines with
values that change, let a student inject a fault and see the alert, acknowledge it, fit a
1024x600 panel and a phone, and ask for a login when one is configured. Screenshots go to
``test-artifacts/`` for a person to look at.

Needs ``apt-get install chromium`` and ``pip install playwright`` (no ``playwright install``:
the system browser is used).
"""

from __future__ import annotations

import re
import shutil
from collections.abc import AsyncIterator
from typing import Any

import pytest
import pytest_asyncio
from playwright.async_api import Browser, BrowserContext, ConsoleMessage, Page, ViewportSize, async_playwright, expect
from playwright.async_api import Error as PlaywrightError

from tests.helpers.status_page import (
    ARTIFACTS,
    CHROMIUM,
    CHROMIUM_ARGS,
    PANEL,
    PHONE,
    Plant,
    StartServer,
    VibrationAlerts,
)

pytestmark = pytest.mark.asyncio(loop_scope="module")

WAIT_MS = 15_000


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def browser() -> AsyncIterator[Browser]:
    if shutil.which(CHROMIUM) is None:
        pytest.fail(f"{CHROMIUM} not found. Fix: apt-get install -y chromium (the browser tests use the system one)")
    async with async_playwright() as playwright:
        launched = await playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        yield launched
        await launched.close()


class Watched:
    """A page with every request URL and every script error it caused."""

    def __init__(self, page: Page) -> None:
        self.page = page
        self.requests: list[str] = []
        self.errors: list[str] = []
        page.on("request", lambda request: self.requests.append(request.url))
        page.on("pageerror", lambda error: self.errors.append(str(error)))
        page.on("console", self._console)

    def _console(self, message: ConsoleMessage) -> None:
        if message.type == "error":
            self.errors.append(message.text)


@pytest_asyncio.fixture(loop_scope="module")
async def new_page(browser: Browser) -> AsyncIterator[Any]:
    contexts: list[BrowserContext] = []

    async def open_page(viewport: ViewportSize = PANEL, **options: Any) -> Watched:
        context = await browser.new_context(viewport=viewport, **options)
        contexts.append(context)
        return Watched(await context.new_page())

    yield open_page
    for context in contexts:
        await context.close()


def cell(page: Page, machine: str, tag: str, part: str = ".number") -> Any:
    return page.locator(f'[data-machine="{machine}"] tr[data-tag="{tag}"] {part}')


async def no_horizontal_scroll(page: Page) -> bool:
    return bool(await page.evaluate("document.documentElement.scrollWidth <= window.innerWidth"))


async def test_page_shows_both_machines_with_live_values_and_fetches_nothing_from_elsewhere(
    plant: Plant, start_server: StartServer, new_page: Any
) -> None:
    server = await start_server(alerts=VibrationAlerts(plant.history), inject=True)
    watched: Watched = await new_page()
    page = watched.page
    response = await page.goto(server.url)
    assert response is not None
    assert response.status == 200
    await expect(page.locator("#link")).to_have_text("live", timeout=WAIT_MS)
    for machine_id in plant.sim.machine_ids:
        card = page.locator(f'[data-machine="{machine_id}"]')
        await expect(card.locator(".state")).to_have_text("up")
        await expect(card.locator("tr[data-tag]")).to_have_count(len(plant.tags(machine_id)))
    flow = cell(page, "pump-1", "flow")
    await expect(flow).to_have_text(re.compile(r"^\d+\.\d+$"))
    first = await flow.text_content()
    await expect(flow).not_to_have_text(first or "", timeout=WAIT_MS)  # live updates arrive
    await expect(cell(page, "pump-1", "flow", ".unit")).to_have_text(" m3/h")
    trend = cell(page, "press-1", "hydraulic_pressure", "svg.trend")
    await page.wait_for_function(
        "el => Number(el.dataset.points) >= 5", arg=await trend.element_handle(), timeout=WAIT_MS
    )
    assert await trend.locator("path").get_attribute("d")
    await expect(page.locator("#inject")).to_be_visible()
    await expect(page.locator("#alerts")).to_be_visible()
    await expect(page.locator("#no-alerts")).to_be_visible()
    assert await no_horizontal_scroll(page)
    ARTIFACTS.mkdir(exist_ok=True)
    await page.screenshot(path=ARTIFACTS / "status-page-1024x600.png")

    origin = server.url.rstrip("/")
    assert watched.requests, "no requests recorded"
    elsewhere = [url for url in watched.requests if not url.startswith(origin + "/")]
    assert elsewhere == [], f"the page fetched from outside the agent: {elsewhere}"
    assert watched.errors == []


async def test_inject_a_fault_see_the_alert_and_acknowledge_it(
    plant: Plant, start_server: StartServer, new_page: Any
) -> None:
    alerts = VibrationAlerts(plant.history)
    server = await start_server(alerts=alerts, inject=True)
    watched: Watched = await new_page()
    page = watched.page
    await page.goto(server.url)
    await expect(page.locator("#link")).to_have_text("live", timeout=WAIT_MS)
    await page.select_option("#inject-machine", "pump-1")
    await page.select_option("#inject-fault", "imbalance")
    await page.click("#inject-button")
    await expect(page.locator("#inject-result")).to_have_class("ok", timeout=WAIT_MS)
    assert [(f.machine_id, f.fault) for f in plant.sim.ground_truth() if f.end_s is None] == [("pump-1", "imbalance")]

    alert = page.locator('#active-alerts li.alert[data-machine="pump-1"]')
    await expect(alert).to_have_count(1, timeout=WAIT_MS)
    await expect(alert.locator(".alert-title")).to_contain_text("vibration_rms up:")
    await expect(alert.locator(".alert-title")).to_contain_text("above the 4.5 mm/s limit")
    await expect(alert.locator(".signals li")).to_have_text(
        ["vibration_rms up: 100 % of the score, 9.9 sigma from normal"]
    )
    await expect(alert.locator(".hint dt")).to_have_text(["Likely cause", "What to do", "How sure"])
    await expect(page.locator("#alert-count")).to_have_text("1")
    await page.screenshot(path=ARTIFACTS / "status-page-alert-1024x600.png")

    await page.fill("#ack-by", "Ana (maintenance)")
    await alert.locator("button.ack").click()
    await expect(alert.locator(".acked")).to_have_text("Acknowledged by Ana (maintenance)", timeout=WAIT_MS)
    assert [a["acknowledged_by"] for a in alerts.active()] == ["Ana (maintenance)"]
    await expect(alert.locator("button.ack")).to_have_count(0)
    assert watched.errors == []

    phone: Watched = await new_page(PHONE, is_mobile=True, has_touch=True)
    await phone.page.goto(server.url)
    await expect(phone.page.locator('#active-alerts li.alert[data-machine="pump-1"]')).to_have_count(1, timeout=WAIT_MS)
    await expect(cell(phone.page, "press-1", "hydraulic_pressure")).not_to_have_text(
        "\u2013", timeout=WAIT_MS
    )  # the placeholder dash
    assert await no_horizontal_scroll(phone.page)
    await phone.page.screenshot(path=ARTIFACTS / "status-page-phone.png", full_page=True)
    assert phone.errors == []


async def test_a_machine_that_goes_down_shows_why_and_comes_back(
    plant: Plant, start_server: StartServer, new_page: Any
) -> None:
    for poller in plant.agent.pollers:
        poller.backoff.initial, poller.backoff.cap = 0.1, 0.3
    server = await start_server()
    watched: Watched = await new_page()
    page = watched.page
    await page.goto(server.url)
    press = page.locator('[data-machine="press-1"]')
    await expect(press.locator(".state")).to_have_text("up", timeout=WAIT_MS)
    await plant.sim.stop_server("modbus")
    try:
        await expect(press.locator(".state")).to_have_text("down", timeout=WAIT_MS)
        await expect(press.locator(".reason")).to_contain_text("down since", timeout=WAIT_MS)
        await expect(page.locator('[data-machine="pump-1"] .state')).to_have_text("up")
        await page.screenshot(path=ARTIFACTS / "status-page-machine-down-1024x600.png")
    finally:
        await plant.sim.start_server("modbus")
    await expect(press.locator(".state")).to_have_text("up", timeout=WAIT_MS)
    await expect(press.locator(".reason")).to_be_hidden()


async def test_login_is_required_when_configured(plant: Plant, start_server: StartServer, new_page: Any) -> None:
    token = "kiosk-token-0123456789"
    server = await start_server(username="shift", password="lead-pass-4291", token=token)
    stranger: Watched = await new_page()
    # Chromium gives up on a basic-auth challenge it has no answer for: nothing of the page loads.
    with pytest.raises(PlaywrightError, match="ERR_INVALID_AUTH_CREDENTIALS"):
        await stranger.page.goto(server.url)
    guesser: Watched = await new_page(http_credentials={"username": "shift", "password": "guess"})
    response = await guesser.page.goto(server.url)
    assert response is not None
    assert response.status == 401
    await expect(guesser.page.locator("body")).to_contain_text("login required")
    for watched in (stranger, guesser):
        assert not [url for url in watched.requests if "/static/" in url or "/api/" in url]

    user: Watched = await new_page(http_credentials={"username": "shift", "password": "lead-pass-4291"})
    response = await user.page.goto(server.url)
    assert response is not None
    assert response.status == 200
    await expect(user.page.locator("#link")).to_have_text("live", timeout=WAIT_MS)
    await expect(user.page.locator('[data-machine="pump-1"] .state')).to_have_text("up")
    assert user.errors == []

    # A wall panel opens the token URL once; the cookie keeps it in, the token leaves the address bar.
    kiosk: Watched = await new_page()
    response = await kiosk.page.goto(f"{server.url}?token={token}")
    assert response is not None
    assert response.status == 200
    assert kiosk.page.url == server.url
    await expect(kiosk.page.locator("#link")).to_have_text("live", timeout=WAIT_MS)
    await expect(kiosk.page.locator('[data-machine="press-1"] .state')).to_have_text("up")
    assert kiosk.errors == []
