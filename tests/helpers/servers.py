"""Real servers for tests: Mosquitto, InfluxDB 1.x and VictoriaMetrics on ephemeral loopback ports.

Tests talk to the same software the agent meets in a plant, never to a mock of it. Each server
runs in its own directory, listens on 127.0.0.1 on a port picked by binding port 0 (so parallel
runs and other services on the machine never collide) and is ready only when it answers its
protocol's readiness probe. Nothing sleeps and hopes.

The fixtures live in ``tests/conftest.py``, so they are available in every test folder and each
session server starts once. Use the session-scoped ones (``mosquitto``, ``influxdb1``, ``victoria_metrics``) when a test
only needs a server to talk to; isolate tests by giving each its own topic prefix / database
(``unique_name``). Use the function-scoped ``fresh_*`` fixtures when a test stops, kills or
restarts the server (outage tests): ``.stop()`` then ``.start()`` comes back on the SAME port,
so clients configured with the old address reconnect.

Every process is stopped at teardown, on failure too, and at interpreter exit as a last resort.
Each server's stdout and stderr go to ``<dir>/server.log``; ``ServerError`` messages carry the
tail of that log so a failing start says why.
"""

from __future__ import annotations

import atexit
import base64
import contextlib
import json
import os
import pwd
import shutil
import signal
import socket
import subprocess
import tempfile
import time
import urllib.error
import urllib.parse
import urllib.request
import uuid
import weakref
from collections.abc import Iterator
from pathlib import Path
from typing import Any, ClassVar, Self

import pytest

READY_TIMEOUT = 30.0
STOP_TIMEOUT = 10.0
_START_ATTEMPTS = 5
_HTTP_TIMEOUT = 10.0

_live: weakref.WeakSet[Server] = weakref.WeakSet()


class ServerError(RuntimeError):
    """A test server could not be started or did not become ready; the message has its log tail."""


def free_port() -> int:
    """A TCP port on 127.0.0.1 that was free a moment ago (the kernel picks it: bind to port 0).

    Another process may take it before the server binds it; ``Server.start`` retries with a new
    port when the server exits early because the address is in use.
    """
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def unique_name(prefix: str = "t") -> str:
    """A short name no other test uses: a database, a topic prefix, a client id."""
    return f"{prefix}_{uuid.uuid4().hex[:10]}"


def tcp_accepts(port: int, host: str = "127.0.0.1", timeout: float = 0.5) -> bool:
    """True when something accepts TCP connections on host:port."""
    try:
        with socket.create_connection((host, port), timeout=timeout):
            return True
    except OSError:
        return False


_MQTT_CONNECT = bytes(
    [0x10, 12, 0x00, 0x04, *b"MQTT", 0x04, 0x02, 0x00, 0x0A, 0x00, 0x00]
)  # MQTT 3.1.1 CONNECT: clean session, keepalive 10 s, empty client id
_MQTT_CONNACK_OK = bytes([0x20, 0x02, 0x00, 0x00])
_MQTT_DISCONNECT = bytes([0xE0, 0x00])


def mqtt_accepts(port: int, host: str = "127.0.0.1", timeout: float = 0.5, *, login_required: bool = False) -> bool:
    """True when an MQTT broker on host:port answers CONNECT with a successful CONNACK.

    A protocol answer, not just an open port: a bare TCP connect could reach some other process
    that grabbed the port between our stop and start. With ``login_required`` the anonymous
    probe's "not authorized" CONNACK (code 5) also proves the broker is up.
    """
    try:
        with socket.create_connection((host, port), timeout=timeout) as sock:
            sock.sendall(_MQTT_CONNECT)
            answer = b""
            while len(answer) < len(_MQTT_CONNACK_OK):
                chunk = sock.recv(len(_MQTT_CONNACK_OK) - len(answer))
                if not chunk:
                    return False
                answer += chunk
            accepted = (b"\x00", b"\x05") if login_required else (b"\x00",)
            if answer[:1] == b"\x20" and answer[3:4] in accepted:
                sock.sendall(_MQTT_DISCONNECT)
                return True
            return False
    except OSError:
        return False


def http_request(
    url: str,
    *,
    method: str = "GET",
    data: bytes | None = None,
    headers: dict[str, str] | None = None,
    timeout: float = _HTTP_TIMEOUT,
) -> tuple[int, bytes]:
    """(status, body) of one HTTP request; HTTP errors are returned, not raised (tests assert on them).

    Blocking: from an async test call it through ``asyncio.to_thread``.
    """
    request = urllib.request.Request(url, data=data, method=method, headers=headers or {})
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:
            status: int = response.status
            return status, response.read()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read()


def _require_binary(binary: str, package: str) -> str:
    path = shutil.which(binary) or next(
        (str(p) for p in (Path("/usr/sbin") / binary, Path("/usr/bin") / binary) if p.exists()), None
    )
    if path is None:
        pytest.fail(
            f"`{binary}` is not installed, so tests needing a real {package} server cannot run. "
            f"Fix: `apt-get install {package}` (Debian package `{package}`); `make test` installs it.",
            pytrace=False,
        )
    return path


class Server:
    """One server process in its own directory on a loopback port; subclasses say how to run and probe it."""

    name: ClassVar[str]
    binary: ClassVar[str]
    package: ClassVar[str]

    def __init__(self, directory: Path | None = None, *, ready_timeout: float = READY_TIMEOUT) -> None:
        self._executable = _require_binary(self.binary, self.package)
        self._owns_directory = directory is None
        self.directory = Path(tempfile.mkdtemp(prefix=f"edge-{self.name}-")) if directory is None else directory
        self.directory.mkdir(parents=True, exist_ok=True)
        self.ready_timeout = ready_timeout
        self.log_path = self.directory / "server.log"
        self._port: int | None = None
        self._process: subprocess.Popen[bytes] | None = None
        self._log_offset = 0

    # ----------------------------------------------------------------- what subclasses define
    def _extra_ports(self) -> None:
        """Pick any further ports the server needs (called with each new main port)."""

    def _command(self) -> list[str]:
        raise NotImplementedError

    def _is_ready(self) -> bool:
        raise NotImplementedError

    # ----------------------------------------------------------------- lifecycle
    @property
    def port(self) -> int:
        """The port clients connect to; fixed after the first start, kept across restarts."""
        if self._port is None:
            raise ServerError(f"{self.name} has not been started yet: call .start() first")
        return self._port

    @property
    def host(self) -> str:
        return "127.0.0.1"

    @property
    def running(self) -> bool:
        return self._process is not None and self._process.poll() is None

    def start(self) -> Self:
        """Start and wait until ready. The first start picks a free port; later starts reuse it."""
        if self.running:
            return self
        if self._port is None:
            last: ServerError | None = None
            for _ in range(_START_ATTEMPTS):
                self._port = free_port()
                self._extra_ports()
                try:
                    self._launch_and_wait()
                except ServerError as exc:
                    if not self._address_in_use():
                        raise
                    last = exc  # lost the race for the port: pick another one
                else:
                    return self
            raise ServerError(f"{self.name}: no free port after {_START_ATTEMPTS} attempts") from last
        # A restart must come back on the same port. The old socket may linger for a moment.
        deadline = time.monotonic() + self.ready_timeout
        while True:
            try:
                self._launch_and_wait()
            except ServerError:
                if not self._address_in_use() or time.monotonic() > deadline:
                    raise
                time.sleep(0.2)
            else:
                return self

    def _launch_and_wait(self) -> None:
        command = self._command()
        with self.log_path.open("ab") as log:
            log.write(f"\n===== starting {self.name} on port {self._port}: {' '.join(command)}\n".encode())
            log.flush()
            self._log_offset = log.tell()
            self._process = subprocess.Popen(
                command,
                stdout=log,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                cwd=self.directory,
                start_new_session=True,  # a Ctrl-C in the terminal reaches pytest, which stops us in order
            )
        _live.add(self)
        deadline = time.monotonic() + self.ready_timeout
        while True:
            if self._process.poll() is not None:
                code = self._process.returncode
                self._process = None
                raise ServerError(f"{self.name} exited with code {code} while starting\n{self.log_tail()}")
            if self._is_ready():
                # The probe could have reached another process on the port; make sure ours still lives.
                if self._process.poll() is None:
                    return
                continue
            if time.monotonic() > deadline:
                self.kill()
                raise ServerError(
                    f"{self.name} on port {self._port} was not ready within {self.ready_timeout:.0f} s\n"
                    f"{self.log_tail()}"
                )
            time.sleep(0.05)

    def _address_in_use(self) -> bool:
        with contextlib.suppress(OSError):
            text = self.log_path.read_bytes()[self._log_offset :].decode(errors="replace")
            return "address already in use" in text.lower()
        return False

    def stop(self, timeout: float = STOP_TIMEOUT) -> None:
        """Graceful stop (SIGTERM): the server saves its state, as on a planned restart."""
        process = self._process
        if process is None:
            return
        if process.poll() is None:
            process.send_signal(signal.SIGTERM)
            try:
                process.wait(timeout)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait(timeout)
        self._process = None

    def kill(self) -> None:
        """Crash stop (SIGKILL): nothing is saved beyond what the server already wrote to disk."""
        process = self._process
        if process is None:
            return
        if process.poll() is None:
            process.kill()
            process.wait(STOP_TIMEOUT)
        self._process = None

    def restart(self) -> Self:
        """Graceful stop, then start on the same port."""
        self.stop()
        return self.start()

    def close(self) -> None:
        """Stop and remove the directory if this object created it."""
        try:
            self.stop()
        finally:
            _live.discard(self)
            if self._owns_directory:
                shutil.rmtree(self.directory, ignore_errors=True)

    def log_tail(self, lines: int = 40) -> str:
        """The last lines the server wrote, for failure messages."""
        try:
            text = self.log_path.read_text(errors="replace")
        except OSError:
            return f"(no log at {self.log_path})"
        tail = "\n".join(text.splitlines()[-lines:])
        return f"--- last {lines} lines of {self.log_path} ---\n{tail}"

    def __enter__(self) -> Self:
        try:
            return self.start()
        except BaseException:
            self.close()
            raise

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"<{type(self).__name__} port={self._port} running={self.running} dir={self.directory}>"


@atexit.register
def _stop_leftovers() -> None:
    """Last resort if a fixture's teardown never ran (interpreter exiting on an error)."""
    for server in list(_live):
        with contextlib.suppress(Exception):
            server.kill()


class Mosquitto(Server):
    """Mosquitto 2.x: anonymous listener on 127.0.0.1, persistence in its directory.

    A graceful ``stop()`` saves sessions, subscriptions and queued QoS 1 messages, so ``start()``
    brings back the same broker state (what a persistent-session client relies on). ``kill()`` keeps
    what the last autosave wrote (every ``autosave_interval`` seconds, default 1).
    ``max_queued_messages`` is raised from Mosquitto's default 1000 so outage tests measure the
    client, not the broker dropping messages for a slow subscriber.
    """

    name = "mosquitto"
    binary = "mosquitto"
    package = "mosquitto"

    def __init__(
        self,
        directory: Path | None = None,
        *,
        ready_timeout: float = READY_TIMEOUT,
        autosave_interval: int = 1,
        max_queued_messages: int = 100_000,
        extra_config: str = "",
        users: dict[str, str] | None = None,
    ) -> None:
        super().__init__(directory, ready_timeout=ready_timeout)
        self.users = users or {}
        self.autosave_interval = autosave_interval
        self.max_queued_messages = max_queued_messages
        self.extra_config = extra_config
        self.config_path = self.directory / "mosquitto.conf"

    def _command(self) -> list[str]:
        lines = [
            f"listener {self.port} 127.0.0.1",
            "allow_anonymous false" if self.users else "allow_anonymous true",
            "persistence true",
            f"persistence_location {self.directory}/",
            f"autosave_interval {self.autosave_interval}",
            f"max_queued_messages {self.max_queued_messages}",
            "log_dest stderr",
            "log_type error",
            "log_type warning",
            "log_type notice",
            "log_type information",
        ]
        if os.geteuid() == 0:
            # As root, Mosquitto drops to user "mosquitto", which cannot write our temp dir.
            lines.append(f"user {pwd.getpwuid(0).pw_name}")
        if self.users:
            password_file = self.directory / "passwords"
            password_file.write_text("")
            for user, password in self.users.items():
                subprocess.run(
                    ["mosquitto_passwd", "-b", str(password_file), user, password], check=True, capture_output=True
                )
            lines.append(f"password_file {password_file}")
        if self.extra_config:
            lines.append(self.extra_config)
        self.config_path.write_text("\n".join(lines) + "\n")
        return [self._executable, "-c", str(self.config_path)]

    def _is_ready(self) -> bool:
        return mqtt_accepts(self.port, login_required=bool(self.users))


class InfluxDB1(Server):
    """InfluxDB 1.x (Debian's ``influxd``): HTTP API on 127.0.0.1, all data in its directory.

    No auth by default. With ``admin=(user, password)`` authentication is enabled and that admin
    user is created on first start (InfluxDB allows it while no user exists); ``query`` then
    authenticates as the admin.
    """

    name = "influxdb1"
    binary = "influxd"
    package = "influxdb"

    def __init__(
        self,
        directory: Path | None = None,
        *,
        ready_timeout: float = READY_TIMEOUT,
        admin: tuple[str, str] | None = None,
    ) -> None:
        super().__init__(directory, ready_timeout=ready_timeout)
        self.config_path = self.directory / "influxdb.conf"
        self.rpc_port: int | None = None
        self.admin = admin
        self._admin_created = False

    def start(self) -> Self:
        super().start()
        if self.admin is not None and not self._admin_created:
            user, password = self.admin
            self.query(f"CREATE USER \"{user}\" WITH PASSWORD '{password}' WITH ALL PRIVILEGES")
            self._admin_created = True
        return self

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def _extra_ports(self) -> None:
        self.rpc_port = free_port()

    def _command(self) -> list[str]:
        d = self.directory
        self.config_path.write_text(
            f"""reporting-disabled = true
bind-address = "127.0.0.1:{self.rpc_port}"

[meta]
  dir = "{d}/meta"

[data]
  dir = "{d}/data"
  wal-dir = "{d}/wal"
  query-log-enabled = false

[monitor]
  store-enabled = false

[http]
  enabled = true
  bind-address = "127.0.0.1:{self.port}"
  auth-enabled = {"true" if self.admin else "false"}
  log-enabled = false
  pprof-enabled = false

[logging]
  level = "warn"
"""
        )
        return [self._executable, "-config", str(self.config_path)]

    def _is_ready(self) -> bool:
        try:
            status, _ = http_request(f"{self.url}/ping", timeout=0.5)
        except OSError:
            return False
        return status == 204

    def query(self, influxql: str, db: str | None = None) -> list[dict[str, Any]]:
        """Rows of an InfluxQL query as dicts (column → value; GROUP BY tags merged in), times in ns.

        Raises ``ServerError`` with InfluxDB's message when the query fails.
        """
        params = {"q": influxql, "epoch": "ns"}
        if db is not None:
            params["db"] = db
        headers = {}
        if self.admin is not None:
            token = base64.b64encode(":".join(self.admin).encode()).decode()
            headers["Authorization"] = f"Basic {token}"
        status, body = http_request(
            f"{self.url}/query", method="POST", data=urllib.parse.urlencode(params).encode(), headers=headers
        )
        if status != 200:
            raise ServerError(f"InfluxQL {influxql!r} failed with HTTP {status}: {body.decode(errors='replace')}")
        rows: list[dict[str, Any]] = []
        for result in json.loads(body).get("results", []):
            if "error" in result:
                raise ServerError(f"InfluxQL {influxql!r} failed: {result['error']}")
            for series in result.get("series", []):
                columns = series["columns"]
                for values in series.get("values", []):
                    row = dict(zip(columns, values, strict=True))
                    row.update(series.get("tags", {}))
                    rows.append(row)
        return rows

    def create_database(self, name: str) -> None:
        """CREATE DATABASE (idempotent in InfluxDB)."""
        self.query(f'CREATE DATABASE "{name}"')

    def drop_database(self, name: str) -> None:
        self.query(f'DROP DATABASE "{name}"')


class VictoriaMetrics(Server):
    """VictoriaMetrics single-node: speaks the InfluxDB line protocol, including the v2 ``/api/v2/write``.

    InfluxDB 2 is not packaged for Debian, so tests of the v2 write path run against this.
    Mapping to keep in mind: line protocol ``measurement`` + field ``f`` becomes the metric
    ``measurement_f``; string fields lose their text (VictoriaMetrics stores 0); booleans become 1/0;
    timestamps are stored in milliseconds.
    Data is visible to reads only after a flush: ``export`` calls ``/internal/force_flush`` first.
    """

    name = "victoria-metrics"
    binary = "victoria-metrics"
    package = "victoria-metrics"

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def _command(self) -> list[str]:
        return [
            self._executable,
            f"-httpListenAddr=127.0.0.1:{self.port}",
            f"-storageDataPath={self.directory / 'data'}",
            "-retentionPeriod=100y",
            "-loggerLevel=WARN",
        ]

    def _is_ready(self) -> bool:
        try:
            status, body = http_request(f"{self.url}/health", timeout=0.5)
        except OSError:
            return False
        return status == 200 and body.strip() == b"OK"

    def flush(self) -> None:
        """Make everything written so far visible to reads."""
        status, body = http_request(f"{self.url}/internal/force_flush")
        if status != 200:
            raise ServerError(f"force_flush failed with HTTP {status}: {body.decode(errors='replace')}")

    def export(self, match: str) -> list[dict[str, Any]]:
        """Raw series matching a selector, e.g. ``'telemetry_value{machine="m1"}'``.

        Each item: ``{"metric": {"__name__": ..., labels...}, "values": [...], "timestamps": [ms...]}``.
        """
        self.flush()
        query = urllib.parse.urlencode({"match[]": match, "start": "0"})
        status, body = http_request(f"{self.url}/api/v1/export?{query}")
        if status != 200:
            raise ServerError(f"export {match!r} failed with HTTP {status}: {body.decode(errors='replace')}")
        return [json.loads(line) for line in body.splitlines() if line.strip()]


@contextlib.contextmanager
def running(server: Server) -> Iterator[Server]:
    """Start ``server`` for the block (a failed start fails the test with the server's log), then close it."""
    try:
        server.start()
    except ServerError as exc:
        server.close()
        pytest.fail(str(exc), pytrace=False)
    try:
        yield server
    finally:
        server.close()
