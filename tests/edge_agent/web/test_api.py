"""The JSON API and live updates against a real agent polling real simulators."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from typing import Any

import aiohttp
import pytest
import pytest_asyncio

from edge_agent.core.errors import ConfigError
from edge_agent.web import StatusServer, WebConfig
from edge_agent.web.snapshot import dumps
from tests.helpers.status_page import (
    Plant,
    StartServer,
    VibrationAlerts,
)
from tests.helpers.waiting import wait_until

pytestmark = pytest.mark.asyncio(loop_scope="module")


@pytest_asyncio.fixture(loop_scope="module")
async def http() -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=10)) as session:
        yield session


async def get_json(http: aiohttp.ClientSession, url: str, status: int = 200) -> Any:
    async with http.get(url) as response:
        body = await response.text()
        assert response.status == status, body
        assert response.content_type == "application/json", body
        return json.loads(body)


async def test_state_shows_every_machine_with_its_link_and_values(plant: Plant, start_server: StartServer) -> None:
    server = await start_server()
    async with aiohttp.ClientSession() as http, http.get(server.url + "api/state") as response:
        assert response.status == 200
        assert "default-src 'self'" in response.headers["Content-Security-Policy"]
        state = await response.json()
    assert [m["id"] for m in state["machines"]] == ["pump-1", "press-1"]
    for machine in state["machines"]:
        assert machine["state"] == "up"
        assert machine["reason"] is None
        assert machine["since"] is not None
        assert machine["last_poll"] is not None
        assert machine["requests_per_cycle"] >= 1
        names = plant.tags(machine["id"])
        assert [t["tag"] for t in machine["tags"]] == names
        assert all(isinstance(t["value"], int | float) and t["quality"] == "good" for t in machine["tags"])
    assert state["agent"]["site"] == "demo"
    assert state["delivery"] == []  # no MQTT, no InfluxDB configured
    assert state["alerts"] is None
    assert state["inject"] is None


async def test_history_is_what_the_simulator_served(
    plant: Plant, start_server: StartServer, http: aiohttp.ClientSession
) -> None:
    server = await start_server()
    await wait_until(lambda: len(plant.history.series("pump-1", "flow")) >= 15, 15, "15 flow points (3 s of polls)")
    body = await get_json(http, server.url + "api/history/pump-1/flow")
    assert body["unit"] == "m3/h"
    served = [v for _, v in plant.sim.served("opcua", "pump-1", "flow")]
    assert len(body["t"]) == len(body["v"]) >= 15
    assert body["t"] == sorted(body["t"])
    for v in body["v"]:  # each point is a value the simulator served (rounded to 6 decimals)
        assert min(abs(v - s) for s in served) < 1e-6
    recent = await get_json(http, server.url + "api/history/pump-1/flow?seconds=2")
    assert 0 < len(recent["t"]) < len(body["t"])
    whole = await get_json(http, server.url + "api/history/press-1")
    assert {s["tag"] for s in whole["tags"]} == set(plant.tags("press-1"))


BAD_REQUESTS: list[tuple[str, str, dict[str, Any], int]] = [
    ("GET", "api/history/nope/flow", {}, 404),
    ("GET", "api/history/pump-1/nope", {}, 404),
    ("GET", "api/history/nope", {}, 404),
    ("GET", "api/history/pump-1/flow?seconds=soon", {}, 400),
    ("GET", "api/history/pump-1/flow?seconds=-5", {}, 400),
    ("GET", "api/history/pump-1/flow?seconds=nan", {}, 400),
    ("GET", "static/../server.py", {}, 404),
    ("GET", "no/such/page", {}, 404),
    ("GET", "api/inject", {}, 405),
    ("POST", "api/inject", {"data": b"{not json", "headers": {"Content-Type": "application/json"}}, 400),
    ("POST", "api/inject", {"json": ["pump-1", "imbalance"]}, 400),
    ("POST", "api/inject", {"json": {"machine": "pump-1"}}, 400),
    ("POST", "api/inject", {"json": {"machine": 7, "fault": "imbalance"}}, 400),
    ("POST", "api/inject", {"json": {"machine": "ghost-9", "fault": "imbalance"}}, 404),
    ("POST", "api/inject", {"json": {"machine": "press-1", "fault": "cavitation"}}, 400),
    ("POST", "api/inject", {"data": b'{"machine": "pump-1", "fault": "leak"}'}, 403),
    ("POST", "api/inject", {"json": {"machine": "pump-1", "fault": "leak"}, "headers": {"Origin": "http://evil"}}, 403),
    ("POST", "api/inject", {"data": b"x" * 100_000, "headers": {"Content-Type": "application/json"}}, 413),
    ("POST", "api/alerts/pump-1/vib-1/ack", {"json": {}}, 404),
    ("POST", "api/alerts/pump-1/vib-1/ack", {"data": b"[]", "headers": {"Content-Type": "application/json"}}, 404),
]


async def test_bad_requests_get_a_4xx_with_a_json_message_never_a_traceback(
    plant: Plant, start_server: StartServer, http: aiohttp.ClientSession
) -> None:
    with_inject = await start_server(inject=True)
    before = plant.sim.ground_truth()
    for method, path, kwargs, status in BAD_REQUESTS:
        async with http.request(method, with_inject.url + path, **kwargs) as response:
            text = await response.text()
            assert (response.status, response.content_type) == (status, "application/json"), (method, path, text)
            assert json.loads(text)["error"], (method, path, text)
            assert "Traceback" not in text
    assert plant.sim.ground_truth() == before  # none of them injected anything


async def test_alert_requests_are_checked_too(
    plant: Plant, start_server: StartServer, http: aiohttp.ClientSession
) -> None:
    server = await start_server(alerts=VibrationAlerts(plant.history))
    cases: list[tuple[str, dict[str, Any], int]] = [
        ("api/alerts/nope/vib-1/ack", {"json": {}}, 404),
        ("api/alerts/pump-1/pump-1-404/ack", {"json": {}}, 404),
        ("api/alerts/pump-1/vib-1/ack", {"data": b"{", "headers": {"Content-Type": "application/json"}}, 400),
        ("api/alerts/pump-1/vib-1/ack", {"json": {"by": ["me"]}}, 400),
        ("api/alerts/pump-1/vib-1/ack", {"json": {"by": "x" * 500}}, 400),
    ]
    for path, kwargs, status in cases:
        async with http.post(server.url + path, **kwargs) as response:
            text = await response.text()
            assert (response.status, response.content_type) == (status, "application/json"), (path, text)


async def test_an_injected_fault_raises_an_alert_that_can_be_acknowledged_once(
    plant: Plant, start_server: StartServer, http: aiohttp.ClientSession
) -> None:
    alerts = VibrationAlerts(plant.history)
    server = await start_server(alerts=alerts, inject=True)
    state = await get_json(http, server.url + "api/state")
    assert state["alerts"] == {"active": [], "recent": [], "error": None}
    assert "imbalance" in state["inject"]["pump-1"]
    assert "cavitation" not in state["inject"]["press-1"]

    async with http.post(server.url + "api/inject", json={"machine": "pump-1", "fault": "imbalance"}) as response:
        assert response.status == 200, await response.text()
    assert [(f.machine_id, f.fault, f.end_s) for f in plant.sim.ground_truth()][-1] == ("pump-1", "imbalance", None)

    async def active() -> list[dict[str, Any]]:
        active: list[dict[str, Any]] = (await get_json(http, server.url + "api/state"))["alerts"]["active"]
        return active

    found: list[dict[str, Any]] = []

    async def alert_shown() -> bool:
        found.extend(await active())
        return bool(found)

    await wait_until(alert_shown, 15, "the alert on /api/state", interval=0.1)
    alert = found[0]
    assert alert["machine"] == "pump-1"
    assert alert["summary"].startswith("vibration_rms up:")
    ack = f"{server.url}api/alerts/pump-1/{alert['alert_id']}/ack"
    async with http.post(ack, json={"by": "Ana (maintenance)"}) as response:
        assert response.status == 200, await response.text()
        assert (await response.json())["by"] == "Ana (maintenance)"
    assert (await active())[0]["acknowledged_by"] == "Ana (maintenance)"
    async with http.post(ack, json={}) as response:
        assert response.status == 404  # already acknowledged


async def test_a_failing_injector_is_a_422_with_its_reason(plant: Plant, start_server: StartServer) -> None:
    # sensor_drift needs a signal: the real simulator refuses it, and the page says why.
    server = await start_server(inject=True, fault_choices={"pump-1": ["sensor_drift"]})
    before = plant.sim.ground_truth()
    async with (
        aiohttp.ClientSession() as http,
        http.post(server.url + "api/inject", json={"machine": "pump-1", "fault": "sensor_drift"}) as response,
    ):
        body = await response.json()
    assert response.status == 422
    assert "signal" in body["error"]
    assert plant.sim.ground_truth() == before


async def read_events(response: aiohttp.ClientResponse, count: int) -> list[dict[str, Any]]:
    """The next ``count`` state events of an SSE stream."""
    events: list[dict[str, Any]] = []
    event = None
    async for raw in response.content:
        line = raw.decode().rstrip("\n")
        if line.startswith("event: "):
            event = line.removeprefix("event: ")
        elif line.startswith("data: ") and event == "state":
            events.append(json.loads(line.removeprefix("data: ")))
            if len(events) == count:
                break
    return events


async def test_live_updates_stream_the_state_and_end_when_the_server_closes(
    plant: Plant, start_server: StartServer, http: aiohttp.ClientSession
) -> None:
    server = await start_server(update_interval=0.2)
    async with http.get(server.url + "api/events") as response:
        assert response.content_type == "text/event-stream"
        first, *_, last = await asyncio.wait_for(read_events(response, 4), 10)
        polls = [{m["id"]: m["polls"] for m in s["machines"]} for s in (first, last)]
        assert all(polls[1][m] > polls[0][m] for m in polls[0]), polls
        assert server.collector.sse_clients == 1
        await asyncio.wait_for(server.close(), 5)
        rest = await asyncio.wait_for(response.content.read(), 5)  # the stream ends, it does not hang
    assert b"Traceback" not in rest


def basic(user: str, password: str) -> dict[str, str]:
    return {"Authorization": aiohttp.encode_basic_auth(user, password)}


async def test_login_when_credentials_are_configured(plant: Plant, start_server: StartServer) -> None:
    token = "0123456789abcdef-token"
    server = await start_server(username="shift", password="lead-pass-4291", token=token)
    async with aiohttp.ClientSession() as anonymous:
        for path in ("", "api/state", "api/events", "metrics", "static/app.js"):
            async with anonymous.get(server.url + path) as response:
                assert response.status == 401, path
                assert response.headers["WWW-Authenticate"].startswith("Basic")
                assert "login required" in (await response.json())["error"]
        async with anonymous.get(server.url + "api/state", headers=basic("shift", "wrong")) as response:
            assert response.status == 401
        async with anonymous.get(server.url + "?token=wrong-token-wrong-token") as response:
            assert response.status == 401
        assert server.collector.rejected_logins() == 2  # the wrong password and the wrong token
        async with anonymous.get(server.url + "api/state", headers={"Authorization": "Bearer " + token}) as response:
            assert response.status == 200
    async with aiohttp.ClientSession(
        headers={"Authorization": aiohttp.encode_basic_auth("shift", "lead-pass-4291")}
    ) as user:
        async with user.get(server.url + "metrics") as response:
            assert response.status == 200
        async with user.get(server.url) as response:
            assert response.status == 200
            assert "lead-pass-4291" not in await response.text()
    async with aiohttp.ClientSession(cookie_jar=aiohttp.CookieJar(unsafe=True)) as kiosk:  # unsafe: IP hosts
        async with kiosk.get(server.url + f"?token={token}") as response:
            assert response.status == 200  # redirected to / with a session cookie
            assert str(response.url) == server.url
            assert token not in str(response.url)
        async with kiosk.get(server.url + "api/state") as response:
            assert response.status == 200
        cookie = next(iter(kiosk.cookie_jar)).value
        assert token not in cookie


async def test_a_non_loopback_server_without_login_refuses_to_start(plant: Plant) -> None:
    # Built without validation (as code could), the server itself still refuses; nothing binds.
    config = WebConfig.model_construct(host="0.0.0.0", port=0, enabled=True, username=None, password=None, token=None)
    server = StatusServer(plant.agent, plant.history, config)
    with pytest.raises(ConfigError, match=r"web.host is '0.0.0.0'.*Fix: set web.username"):
        await server.start()
    with pytest.raises(RuntimeError, match="not started"):
        _ = server.url
    await server.close()


class OddAlerts:
    """An alerts provider whose alerts hold what Python has but JSON has not, and whose ack breaks."""

    def active(self) -> list[dict[str, Any]]:
        return [
            {
                "id": 7,
                "machine": "pump-1",
                "since": datetime(2026, 1, 5, 6, 0, tzinfo=UTC),
                "score": float("nan"),
                "signals": {"flow", "vibration_rms"},
            }
        ]

    def recent(self) -> list[dict[str, Any]]:
        raise RuntimeError("alert store unavailable")

    def acknowledge(self, machine: str, alert_id: str, by: str) -> bool:
        raise RuntimeError("alert store unavailable")


async def test_a_failing_or_odd_alerts_provider_never_breaks_the_page(
    plant: Plant, start_server: StartServer, http: aiohttp.ClientSession, caplog: pytest.LogCaptureFixture
) -> None:
    server = await start_server(alerts=OddAlerts())
    state = await get_json(http, server.url + "api/state")
    assert state["alerts"]["error"] == "alerts unavailable: RuntimeError: alert store unavailable"
    assert [m["state"] for m in state["machines"]] == ["up", "up"]
    async with http.post(server.url + "api/alerts/pump-1/7/ack", json={}) as response:
        text = await response.text()
    assert response.status == 500
    assert json.loads(text) == {"error": "internal error in the status page; the agent's log has the details"}
    assert "Traceback" not in text
    assert "alert store unavailable" in caplog.text  # the details went to the log


async def test_odd_alert_values_are_strict_json() -> None:
    text = dumps({"active": OddAlerts().active()})
    assert "NaN" not in text
    alert = json.loads(text)["active"][0]
    assert alert["since"] == "2026-01-05T06:00:00+00:00"
    assert alert["score"] is None
    assert sorted(alert["signals"]) == ["flow", "vibration_rms"]


async def test_a_busy_port_is_a_clear_error(plant: Plant, start_server: StartServer) -> None:
    first = await start_server()
    port = int(first.url.rstrip("/").rsplit(":", 1)[1])
    second = StatusServer(plant.agent, plant.history, WebConfig(port=port))
    with pytest.raises(OSError, match=rf"cannot listen on 127.0.0.1:{port} \(address already in use\)\. Fix: "):
        await second.start()
    await second.close()


async def test_without_a_login_only_loopback_names_are_answered(
    plant: Plant, start_server: StartServer, http: aiohttp.ClientSession
) -> None:
    # A site that points its own name at 127.0.0.1 (DNS rebinding) sends that name in Host.
    open_page = await start_server()
    for host in ("localhost", "127.0.0.1", "[::1]"):
        async with http.get(open_page.url + "api/state", headers={"Host": f"{host}:8080"}) as response:
            assert response.status == 200, host
    async with http.get(open_page.url + "api/state", headers={"Host": "rebind.example:8080"}) as response:
        assert response.status == 403
        assert "answers to loopback addresses only" in (await response.json())["error"]
    with_login = await start_server(username="shift", password="lead-pass-4291")
    headers = {"Host": "linepc.example:8080"} | basic("shift", "lead-pass-4291")
    async with http.get(with_login.url + "api/state", headers=headers) as response:
        assert response.status == 200  # with a login, any name (a reverse proxy's) is fine
