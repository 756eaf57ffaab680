"""A flood of connections on the page, at the default open-file limit, must not reach the plant's data.

``edge-agent run`` runs in a subprocess with RLIMIT_NOFILE 1024 (the usual default outside the
systemd unit), polling the test's simulators and serving the page with a login. The test holds
1,100 idle connections and 2,000 live-update streams on it (loopback, bounded in count and
time), then checks what a user and the plant would notice: a valid login still answers within
2 s (the user's deadline), the pollers kept their rhythm (poll counts over the flood against the
configured interval, generous bound), the agent's log grew by a few KB at most and holds no
traceback, and the page answers again after the flood.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import re
import resource
import signal
import sys
import threading
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest
import pytest_asyncio

from edge_agent.commands.demo import demo_config
from simulators import Simulation
from tests.helpers.status_page import POLL_INTERVAL, fast
from tests.helpers.waiting import wait_until

pytestmark = pytest.mark.asyncio(loop_scope="module")

ROOT = Path(__file__).resolve().parents[3]
FD_LIMIT = 1024
IDLE = 1100
STREAMS = 2000
PASSWORD = "lead-pass-4291"
TOKEN = "0123456789abcdef-flood"
LOG_GROWTH_LIMIT = 4096
OPENING_S = 20.0
"""How long the flood may take to open its connections; it goes on with what it has then."""
AUTH = {"Authorization": aiohttp.encode_basic_auth("shift", PASSWORD)}


class Page:
    def __init__(self, process: asyncio.subprocess.Process, log: Path, url: str) -> None:
        self.process = process
        self.log = log
        self.url = url
        host, port = url.split("//")[1].rstrip("/").rsplit(":", 1)
        self.host, self.port = host, int(port)

    async def polls(self, http: aiohttp.ClientSession) -> int:
        async with asyncio.timeout(10), http.get(self.url + "api/state", headers=AUTH) as response:
            assert response.status == 200
            state = await response.json()
        return sum(machine["polls"] for machine in state["machines"])


def limit_open_files() -> None:
    """Run in the child before exec: the soft limit most systems start processes with."""
    _, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (FD_LIMIT, hard))


@pytest.fixture(scope="module")
def enough_files_here() -> None:
    """The test itself holds 3,100 sockets."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    wanted = IDLE + STREAMS + 500
    if soft < wanted:
        if hard != resource.RLIM_INFINITY and hard < wanted:
            pytest.fail(f"the test needs {wanted} open files, the hard limit is {hard}. Fix: ulimit -Hn 8192")
        resource.setrlimit(resource.RLIMIT_NOFILE, (wanted, hard))


@pytest_asyncio.fixture(loop_scope="module")
async def page(sim: Simulation, tmp_path: Path, enough_files_here: None) -> AsyncIterator[Page]:
    config: dict[str, Any] = fast(demo_config(sim)).model_dump(mode="json", exclude_unset=True)
    config["logging"] = {"level": "INFO"}
    config["web"] = {"host": "127.0.0.1", "port": 0, "username": "shift", "password": PASSWORD, "token": TOKEN}
    path = tmp_path / "agent.yaml"
    path.write_text(json.dumps(config))
    log = tmp_path / "agent.log"
    with log.open("wb") as output:
        process = await asyncio.create_subprocess_exec(
            *(sys.executable, "-m", "edge_agent", "run", str(path)),
            stdout=asyncio.subprocess.DEVNULL,
            stderr=output,
            env={**os.environ, "PYTHONPATH": str(ROOT)},
            preexec_fn=limit_open_files,
        )
    try:
        found: list[str] = []

        def started() -> bool:
            found[:] = re.findall(r"status page: (http://\S+/)", log.read_text(errors="replace"))
            return bool(found) or process.returncode is not None

        await wait_until(started, 30, "the page's start line in the agent's log", detail=log.read_text)
        assert process.returncode is None, log.read_text()
        yield Page(process, log, found[0])
    finally:
        if process.returncode is None:
            process.send_signal(signal.SIGTERM)
            try:
                await asyncio.wait_for(process.wait(), 15)
            except TimeoutError:
                process.kill()
                await process.wait()


async def open_many(page: Page, count: int, request: bytes | None, writers: list[asyncio.StreamWriter]) -> None:
    """``count`` connections, 100 at a time; each sends ``request`` (if any) and then never reads."""
    gate = asyncio.Semaphore(100)

    async def one() -> None:
        async with gate:
            with contextlib.suppress(OSError, TimeoutError):  # the page may close one to make room
                async with asyncio.timeout(5):
                    _, writer = await asyncio.open_connection(page.host, page.port)
                    writers.append(writer)
                    if request is not None:
                        writer.write(request)
                        await writer.drain()

    await asyncio.gather(*(one() for _ in range(count)))


async def flood(page: Page, ready: threading.Event, release: threading.Event) -> None:
    """Hold the idle sockets and streams until ``release``; in a thread with a loop of its own.

    Not on the test's loop: the simulators the agent polls run there, and 3,100 clients on the
    same loop would slow the machines' answers, not the agent.
    """
    stream = f"GET /api/events HTTP/1.1\r\nHost: {page.host}:{page.port}\r\nAuthorization: Bearer {TOKEN}\r\n\r\n"
    writers: list[asyncio.StreamWriter] = []
    try:
        with contextlib.suppress(TimeoutError):  # a page that cannot accept: flood with what is open
            async with asyncio.timeout(OPENING_S):
                await open_many(page, IDLE, None, writers)
                await open_many(page, STREAMS, stream.encode(), writers)
        ready.set()
        await asyncio.to_thread(release.wait, 60)
    finally:
        for writer in writers:
            writer.close()


async def test_a_flood_of_idle_sockets_and_streams_does_not_reach_the_plant(page: Page) -> None:
    ready, release = threading.Event(), threading.Event()
    async with aiohttp.ClientSession() as http:
        before_polls, began = await page.polls(http), time.monotonic()
        log_before = page.log.stat().st_size
        flooding = asyncio.create_task(asyncio.to_thread(asyncio.run, flood(page, ready, release)), name="flood")
        try:
            await wait_until(lambda: ready.is_set() or flooding.done(), OPENING_S + 10, "the flood's connections")
            async with aiohttp.ClientSession() as user:  # a fresh connection, as a browser would open
                try:
                    async with asyncio.timeout(2), user.get(page.url + "api/state", headers=AUTH) as response:
                        assert response.status == 200
                        machines = len((await response.json())["machines"])
                except TimeoutError:
                    pytest.fail("a valid login got no answer within 2 s during the flood")
            polls, elapsed = await page.polls(http) - before_polls, time.monotonic() - began
            expected = machines * elapsed / POLL_INTERVAL
            assert polls >= 0.5 * expected, f"{polls} polls in {elapsed:.1f} s, expected about {expected:.0f}"
            assert page.process.returncode is None
        finally:
            release.set()
            await flooding
        await page.polls(http)  # and the page still answers afterwards
    grown = page.log.read_bytes()[log_before:]
    assert b"Traceback" not in grown, grown.decode(errors="replace")[:3000]
    assert len(grown) < LOG_GROWTH_LIMIT, grown.decode(errors="replace")[:3000]
