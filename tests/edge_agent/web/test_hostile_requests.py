"""Odd numbers, deep JSON and malformed HTTP get a short 4xx; the log gets one line, never a traceback."""

from __future__ import annotations

import asyncio
import logging
from typing import Any

import aiohttp
import pytest

from tests.helpers.status_page import Plant, StartServer, VibrationAlerts

pytestmark = pytest.mark.asyncio(loop_scope="module")


async def answer(http: aiohttp.ClientSession, method: str, url: str, **kwargs: Any) -> tuple[int, Any]:
    async with http.request(method, url, **kwargs) as response:
        assert response.content_type == "application/json"
        return response.status, await response.json()


async def test_query_numbers_are_finite_and_clamped(plant: Plant, start_server: StartServer) -> None:
    server = await start_server()
    machine = plant.agent.pollers[0].machine.id
    tag = plant.tags(machine)[0]
    async with aiohttp.ClientSession() as http:
        for seconds in ("1e308", "99999999999999999999", "1e-300"):
            status, body = await answer(http, "GET", f"{server.url}api/history/{machine}/{tag}?seconds={seconds}")
            assert status == 200, body  # as much as the page keeps
            status, body = await answer(http, "GET", f"{server.url}api/history/{machine}?seconds={seconds}")
            assert status == 200, body
        for seconds in ("inf", "1e400", "-inf", "nan", "-1", "0", "1e-400", "x" * 5000):
            status, body = await answer(http, "GET", f"{server.url}api/history/{machine}/{tag}?seconds={seconds}")
            assert status == 400
            assert body["error"].startswith("seconds must be a positive number")
            assert len(body["error"]) < 300, "a short reason, not the whole input"


async def test_deep_or_broken_json_is_a_400_with_a_short_reason(plant: Plant, start_server: StartServer) -> None:
    server = await start_server(alerts=VibrationAlerts(plant.history), inject=True)
    machine = plant.agent.pollers[0].machine.id
    bodies = {
        "[" * 7000 + "]" * 7000: "nests deeper than 16 levels",
        '{"machine": ' + "[" * 7000: "nests deeper than 16 levels",
        '{"a": ' * 17 + "1" + "}" * 17: "nests deeper than 16 levels",
        '{"machine": "a' + "\\" * 8000: "not valid JSON",
        "\xff\xfe": "not valid",
    }
    async with aiohttp.ClientSession() as http:
        for body, reason in bodies.items():
            for url in (f"{server.url}api/inject", f"{server.url}api/alerts/{machine}/a-1/ack"):
                status, answered = await answer(
                    http,
                    "POST",
                    url,
                    data=body.encode("utf-8", "surrogatepass"),
                    headers={"Content-Type": "application/json"},
                )
                assert status == 400, (url, answered)
                assert reason in answered["error"]
                assert len(answered["error"]) < 300
        text = '{"machine": "%s", "fault": "%s", "x": "[[[[[[[[[[[[[[[[[[[["}'
        fault = plant.fault_choices()[machine][0]
        status, answered = await answer(
            http,
            "POST",
            f"{server.url}api/inject",
            data=text % (machine, fault),
            headers={"Content-Type": "application/json"},
        )
        assert status == 200, "brackets inside strings are no nesting"


async def raw_exchange(url: str, request: bytes) -> bytes:
    host, port = url.split("//")[1].rstrip("/").rsplit(":", 1)
    reader, writer = await asyncio.open_connection(host, int(port))
    try:
        writer.write(request)
        await writer.drain()
        async with asyncio.timeout(10):
            return await reader.read(65536)
    finally:
        writer.close()


async def test_malformed_http_is_a_400_and_one_log_line_without_a_traceback(
    plant: Plant, start_server: StartServer, caplog: pytest.LogCaptureFixture
) -> None:
    server = await start_server()
    requests = [
        b"GET / HTTP/1.1\r\nHost: 127.0.0.1\r\nBroken header line\r\n\r\n",
        b"GET / HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Length: many\r\n\r\n",
        b"GET / HTTP/1.1\r\nHost: 127.0.0.1\r\nX: " + b"y" * 9000 + b"\r\n\r\n",
    ]
    caplog.set_level(logging.INFO)
    for _ in range(20):
        for request in requests:
            answered = await raw_exchange(server.url, request)
            assert answered.split(b"\r\n")[0] in (b"HTTP/1.0 400 Bad Request", b"HTTP/1.1 400 Bad Request"), answered[
                :200
            ]
    problems = [r for r in caplog.records if r.levelno >= logging.WARNING]
    assert all(r.exc_info is None and r.exc_text is None for r in problems), "no traceback"
    assert all(r.levelno == logging.WARNING for r in problems), [r.getMessage() for r in problems]
    assert len(problems) <= len(requests), [r.getMessage() for r in problems]
    assert all("\n" not in r.getMessage() for r in problems)
    assert any("a bad request" in r.getMessage() for r in problems)
