"""Fixtures for interop tests: third-party clients (Debian's mbpoll, node-opcua) against the simulators,
and our connectors against third-party servers (node-opcua, libmodbus).

These clients and servers were not written by us, so a shared misunderstanding of Modbus or OPC UA
cannot make a test pass. Needs: Debian ``mbpoll`` (``apt-get install -y mbpoll``) and Node.js >= 18 with
``npm ci --prefix tests/interop`` (the session fixture runs it once when node_modules is missing).
"""

from __future__ import annotations

import asyncio
import shutil
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.interop.libmodbus import build
from tests.interop.node_opcua import NodeOpcUaServer

HERE = Path(__file__).resolve().parent
NPM_TIMEOUT_S = 300.0


@dataclass(frozen=True)
class Completed:
    """One finished client run."""

    args: tuple[str, ...]
    returncode: int
    stdout: str
    stderr: str

    def explain(self) -> str:
        return f"$ {' '.join(self.args)}\nexit {self.returncode}\nstdout:\n{self.stdout}\nstderr:\n{self.stderr}"


async def run_client(*args: str, timeout: float = 20.0) -> Completed:
    """Run a client as a subprocess without blocking the event loop (the simulator keeps serving).

    A client that hangs is killed and fails the test after ``timeout`` seconds.
    """
    process = await asyncio.create_subprocess_exec(
        *args, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE, cwd=HERE
    )
    try:
        async with asyncio.timeout(timeout):
            stdout, stderr = await process.communicate()
    except TimeoutError:
        process.kill()
        stdout, stderr = await process.communicate()
        done = Completed(tuple(args), -9, stdout.decode(errors="replace"), stderr.decode(errors="replace"))
        pytest.fail(f"client did not finish within {timeout:g} s (killed)\n{done.explain()}")
    assert process.returncode is not None
    return Completed(tuple(args), process.returncode, stdout.decode(errors="replace"), stderr.decode(errors="replace"))


@pytest.fixture(scope="session")
def mbpoll() -> str:
    """Path of Debian's mbpoll; fails (not skips) when missing, naming the install step."""
    path = shutil.which("mbpoll")
    if path is None:
        pytest.fail("mbpoll is not installed. Fix: apt-get install -y mbpoll (Debian/Ubuntu package 'mbpoll')")
    return path


NODE_PACKAGES = ("node-opcua-client", "node-opcua-server")
"""Packages of package.json whose absence means ``npm ci`` has not run (or ran on an older lock)."""


def node_and_modules() -> str:
    """Path of node, after ``npm ci --prefix tests/interop`` if a package is missing; fails with the fix."""
    node = shutil.which("node")
    if node is None:
        pytest.fail("node is not installed. Fix: install Node.js >= 18, then npm ci --prefix tests/interop")
    if all((HERE / "node_modules" / name / "package.json").is_file() for name in NODE_PACKAGES):
        return node
    npm = shutil.which("npm")
    if npm is None:
        pytest.fail("npm is not installed. Fix: install Node.js >= 18 with npm, then npm ci --prefix tests/interop")
    command = [npm, "ci", "--prefix", str(HERE), "--no-audit", "--no-fund"]
    try:
        result = subprocess.run(command, capture_output=True, text=True, timeout=NPM_TIMEOUT_S, check=False)
    except subprocess.TimeoutExpired:
        pytest.fail(f"{' '.join(command)} did not finish within {NPM_TIMEOUT_S:g} s (no registry access?)")
    if result.returncode != 0:
        pytest.fail(
            f"{' '.join(command)} failed (exit {result.returncode}); node-opcua cannot be installed."
            f" Fix: run it by hand with registry access.\n{result.stdout[-2000:]}\n{result.stderr[-4000:]}"
        )
    return node


@pytest.fixture(scope="session")
def node_opcua_script(tmp_path_factory: pytest.TempPathFactory) -> tuple[str, Path, Path]:
    """(node, browse_read.mjs, PKI folder); runs ``npm ci --prefix tests/interop`` once if needed."""
    node = node_and_modules()
    # node-opcua makes a client certificate even for security None: once per session, not in ~/.config.
    return node, HERE / "browse_read.mjs", tmp_path_factory.mktemp("node-opcua-pki")


@pytest.fixture(scope="session")
def node_opcua_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[NodeOpcUaServer]:
    """node-opcua's server, shared by the session: start-up loads the standard nodeset and makes an RSA
    key (seconds), and the tests only read from it. The agent must not have sent a Write or Call."""
    with NodeOpcUaServer(node_and_modules(), tmp_path_factory.mktemp("node-opcua-server")) as running:
        yield running
    assert running.write_requests == 0, "the agent sent a Write or Call request to the node-opcua server"


@pytest.fixture(scope="session")
def libmodbus_binary(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The libmodbus server, compiled once per session (gcc, libmodbus-dev, pkg-config)."""
    try:
        return build(tmp_path_factory.mktemp("libmodbus-build"))
    except RuntimeError as exc:
        pytest.fail(str(exc))
