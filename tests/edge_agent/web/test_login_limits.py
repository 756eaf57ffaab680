"""Password guessing is slowed per address, the kiosk cookie expires, HTTPS is served, weak passwords refused.

The server's clock is injected (``StatusServer(clock=...)``): the test moves time on instead of
waiting for a lockout window or a cookie lifetime to pass.
"""

from __future__ import annotations

import asyncio
import shutil
import ssl
from collections.abc import AsyncIterator, Awaitable, Callable
from http.cookies import SimpleCookie
from pathlib import Path
from typing import Any

import aiohttp
import pytest
import pytest_asyncio

from edge_agent.core.errors import ConfigError
from edge_agent.runtime.loader import parse_config
from edge_agent.web import StatusServer, WebConfig
from tests.helpers.status_page import Plant

pytestmark = pytest.mark.asyncio(loop_scope="module")

PASSWORD = "lead-pass-4291"
TOKEN = "0123456789abcdef-kiosk"


class FakeClock:
    """Unix seconds that move only when the test says so."""

    def __init__(self) -> None:
        self.now = 1_800_000_000.0

    def __call__(self) -> float:
        return self.now


Start = Callable[..., Awaitable[StatusServer]]


@pytest_asyncio.fixture(loop_scope="module")
async def start(plant: Plant) -> AsyncIterator[Start]:
    servers: list[StatusServer] = []

    async def start(clock: FakeClock, **web: Any) -> StatusServer:
        config = WebConfig.model_validate({"port": 0, **web})
        server = StatusServer(plant.agent, plant.history, config, clock=clock)
        await server.start()
        servers.append(server)
        return server

    yield start
    for server in servers:
        await server.close()


def basic(password: str) -> dict[str, str]:
    return {"Authorization": aiohttp.encode_basic_auth("shift", password)}


async def status(http: aiohttp.ClientSession, url: str, **kwargs: Any) -> tuple[int, aiohttp.ClientResponse]:
    async with http.get(url, allow_redirects=False, **kwargs) as response:
        await response.read()
        return response.status, response


async def test_wrong_passwords_make_the_address_wait_even_for_the_right_one(plant: Plant, start: Start) -> None:
    clock = FakeClock()
    server = await start(clock, username="shift", password=PASSWORD, limits={"login_failures": 3})
    url = server.url + "api/state"
    async with aiohttp.ClientSession() as http:
        assert (await status(http, url, headers=basic(PASSWORD)))[0] == 200
        for _ in range(3):
            assert (await status(http, url, headers=basic("guess-guess-1")))[0] == 401
        code, response = await status(http, url, headers=basic(PASSWORD))
        assert code == 429, "the right password is refused while the address waits: no oracle"
        assert response.headers["Retry-After"] == "1"
        assert (await status(http, url))[0] == 401, "no credential, no wait: the browser's first request"

        clock.now += 1.0
        assert (await status(http, url, headers=basic("guess-guess-2")))[0] == 401
        code, response = await status(http, url, headers=basic(PASSWORD))
        assert (code, response.headers["Retry-After"]) == (429, "2"), "each further wrong one doubles the wait"
        clock.now += 1.5
        assert (await status(http, url, headers=basic(PASSWORD)))[0] == 429
        clock.now += 0.5
        assert (await status(http, url, headers=basic(PASSWORD)))[0] == 200, "the wait is over"
        for _ in range(2):  # a right login cleared the record: the free tries are back
            assert (await status(http, url, headers=basic("guess-guess-3")))[0] == 401
        assert (await status(http, url, headers=basic(PASSWORD)))[0] == 200


async def test_the_wait_is_capped(plant: Plant, start: Start) -> None:
    clock = FakeClock()
    limits = {"login_failures": 1, "login_lockout": "10s", "login_lockout_max": "30s"}
    server = await start(clock, username="shift", password=PASSWORD, limits=limits)
    url = server.url + "api/state"
    async with aiohttp.ClientSession() as http:
        waits = []
        for _ in range(4):
            assert (await status(http, url, headers=basic("guess-guess-1")))[0] == 401
            code, response = await status(http, url, headers=basic("guess-guess-1"))
            assert code == 429
            waits.append(int(response.headers["Retry-After"]))
            clock.now += waits[-1]
        assert waits == [10, 20, 30, 30]


def session_cookie(response: aiohttp.ClientResponse) -> Any:
    cookies = SimpleCookie()
    for header in response.headers.getall("Set-Cookie"):
        cookies.load(header)
    return cookies["edge_agent_session"]


async def test_the_kiosk_cookie_has_a_lifetime_is_renewed_while_used_and_then_expires(
    plant: Plant, start: Start
) -> None:
    clock = FakeClock()
    server = await start(clock, token=TOKEN, session_lifetime="1h")
    async with aiohttp.ClientSession(cookie_jar=aiohttp.DummyCookieJar()) as http:
        code, response = await status(http, server.url + f"?token={TOKEN}")
        assert code == 303
        cookie = session_cookie(response)
        assert cookie["max-age"] == "3600"
        assert cookie["httponly"]
        assert cookie["samesite"] == "Strict"
        assert cookie["path"] == "/"
        assert not cookie["secure"], "plain HTTP: a Secure cookie would never come back"
        assert TOKEN not in cookie.value
        sent = {"Cookie": f"edge_agent_session={cookie.value}"}

        clock.now += 1000
        code, response = await status(http, server.url + "api/state", headers=sent)
        assert code == 200
        assert "Set-Cookie" not in response.headers
        clock.now += 1000  # past half the lifetime: a fresh cookie comes with the answer
        code, response = await status(http, server.url + "api/state", headers=sent)
        assert code == 200
        renewed = {"Cookie": f"edge_agent_session={session_cookie(response).value}"}

        clock.now += 1601  # the first cookie is 3601 s old now
        assert (await status(http, server.url + "api/state", headers=sent))[0] == 401
        assert (await status(http, server.url + "api/state", headers=renewed))[0] == 200
        forged = {"Cookie": f"edge_agent_session=9999999999.{'0' * 64}"}
        assert (await status(http, server.url + "api/state", headers=forged))[0] == 401


async def make_certificate(directory: Path) -> tuple[Path, Path]:
    cert, key = directory / "page.pem", directory / "page.key"
    process = await asyncio.create_subprocess_exec(
        *("openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes"),
        *("-keyout", str(key), "-out", str(cert), "-days", "1", "-subj", "/CN=127.0.0.1"),
        *("-addext", "subjectAltName=IP:127.0.0.1"),
        stdout=asyncio.subprocess.DEVNULL,
        stderr=asyncio.subprocess.PIPE,
    )
    _, error = await process.communicate()
    assert process.returncode == 0, error.decode()
    return cert, key


async def test_https_is_served_and_its_cookie_is_secure(plant: Plant, start: Start, tmp_path: Path) -> None:
    if shutil.which("openssl") is None:
        pytest.fail("openssl is needed to make a test certificate. Fix: apt-get install openssl", pytrace=False)
    cert, key = await make_certificate(tmp_path)
    server = await start(FakeClock(), token=TOKEN, tls={"cert": str(cert), "key": str(key)})
    assert server.url.startswith("https://127.0.0.1:")
    trust = ssl.create_default_context(cafile=str(cert))
    async with aiohttp.ClientSession(cookie_jar=aiohttp.DummyCookieJar()) as http:
        code, response = await status(http, server.url + f"?token={TOKEN}", ssl=trust)
        assert code == 303
        assert session_cookie(response)["secure"]
        headers = {"Authorization": f"Bearer {TOKEN}"}
        assert (await status(http, server.url + "api/state", headers=headers, ssl=trust))[0] == 200
        with pytest.raises(aiohttp.ClientError):
            await status(http, server.url.replace("https", "http") + "api/state", headers=headers)


async def test_a_missing_certificate_is_a_clear_error(plant: Plant, tmp_path: Path) -> None:
    config = WebConfig(port=0, tls={"cert": str(tmp_path / "none.pem"), "key": str(tmp_path / "none.key")})
    with pytest.raises(ConfigError, match=r"web.tls: cannot load the certificate .*none.pem.* Fix: point cert"):
        await StatusServer(plant.agent, plant.history, config).start()


async def test_a_short_password_is_refused_when_the_config_is_loaded(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("EDGE_WEB_PASSWORD", "short-pw")
    text = (
        "machines:\n  - {id: m1, type: modbus, host: 127.0.0.1, tags: [{name: t, address: 0, type: float32}]}\n"
        "web:\n  username: shift\n  password: ${EDGE_WEB_PASSWORD}\n"
    )
    with pytest.raises(ConfigError) as raised:
        parse_config(text, "agent.yaml")
    message = str(raised.value)
    assert "line 3: web" in message
    assert "web.password is shorter than 12 characters" in message
    assert "Fix: use a long random one" in message
    assert "short-pw" not in message, "the secret itself is never printed"
    monkeypatch.setenv("EDGE_WEB_PASSWORD", "a-long-enough-one")
    assert parse_config(text, "agent.yaml").web is not None
