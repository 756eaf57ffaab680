"""The status page server: one page, a JSON API, live updates over Server-Sent Events, ``/metrics``.

It runs inside the agent's event loop (aiohttp), reading the same objects the pollers update,
so there is nothing to synchronise and nothing to store. Every asset is bundled in the package
(``static/``) and the Content-Security-Policy allows this origin only: line PCs are offline, and
a page that quietly fetches a CDN would show nothing there.

Live updates: one task (``web:updates``) builds the state once per ``update_interval`` while at
least one browser listens and hands the same bytes to every stream; a slow browser only skips
intermediate states, never holds the others back. Acknowledge and inject push an update at once.

Errors: every failure is a JSON ``{"error": message}`` with a 4xx status for a bad request
(malformed JSON, unknown machine or tag, wrong method) and a plain 500 without a traceback for a
bug (the traceback goes to the agent's log).
"""

from __future__ import annotations

import asyncio
import contextlib
import inspect
import logging
import math
import os
from collections.abc import Mapping, Sequence
from importlib import resources
from typing import TYPE_CHECKING, Any

from aiohttp import web

from edge_agent.core.errors import ConfigError, Forbidden, LoginRequired
from edge_agent.web.auth import USER_KEY, Authenticator, check_same_origin
from edge_agent.web.config import WebConfig
from edge_agent.web.metrics import CONTENT_TYPE, AgentCollector, Metrics, requests_per_cycle
from edge_agent.web.snapshot import DEFAULT_FAULTS, AlertsProvider, FaultInjector, dumps, ns_to_ms, state_json

if TYPE_CHECKING:  # the config module imports WebConfig, and the runtime imports the config
    from edge_agent.runtime.agent import Agent
    from edge_agent.web.history import HistoryBuffer

log = logging.getLogger(__name__)

ASSETS = {
    "index.html": "text/html",
    "app.js": "text/javascript",
    "style.css": "text/css",
    "favicon.svg": "image/svg+xml",
}
CSP = (
    "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; connect-src 'self'; "
    "base-uri 'none'; form-action 'self'; frame-ancestors 'none'"
)
MAX_BODY = 16 * 1024
MAX_NAME = 200
INJECT_TIMEOUT_S = 10.0
SHUTDOWN_TIMEOUT_S = 2.0


class RequestError(Exception):
    """A request the server cannot serve; becomes ``{"error": message}`` with ``status``."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status


def _error(status: int, message: str, headers: Mapping[str, str] | None = None) -> web.Response:
    return web.Response(status=status, text=dumps({"error": message}), content_type="application/json", headers=headers)


@web.middleware
async def _errors(request: web.Request, handler: Any) -> web.StreamResponse:
    """Every failure as JSON; no traceback ever reaches the browser."""
    try:
        response: web.StreamResponse = await handler(request)
    except RequestError as exc:
        return _error(exc.status, str(exc))
    except LoginRequired as exc:
        return _error(401, str(exc), {"WWW-Authenticate": exc.challenge})
    except Forbidden as exc:
        return _error(403, str(exc))
    except web.HTTPException as exc:
        if exc.status < 400:
            raise
        headers = {k: v for k, v in exc.headers.items() if k in ("Allow", "WWW-Authenticate")}
        return _error(exc.status, f"{exc.reason}: {request.method} {request.path[:MAX_NAME]}", headers)
    except (asyncio.CancelledError, ConnectionResetError):
        raise
    except Exception:
        log.exception("status page: error serving %s %s", request.method, request.path)
        return _error(500, "internal error in the status page; the agent's log has the details")
    return response


class _Updates:
    """The latest state bytes and a way to wait for the next ones (no queue per client)."""

    def __init__(self) -> None:
        self.seq = 0
        self.payload = b""
        self.closed = False
        self.listeners = 0
        self.kick = asyncio.Event()
        self._next = asyncio.Event()

    def publish(self, payload: bytes) -> None:
        self.seq += 1
        self.payload = payload
        ready, self._next = self._next, asyncio.Event()
        ready.set()

    async def after(self, seq: int) -> tuple[int, bytes] | None:
        """The first state newer than ``seq``; None once the server closes."""
        while self.seq <= seq and not self.closed:
            await self._next.wait()
        return None if self.closed else (self.seq, self.payload)

    def close(self) -> None:
        self.closed = True
        self._next.set()
        self.kick.set()


class StatusServer:
    """Serves the status page for ``agent`` from ``history`` (a sink the agent feeds).

    ``alerts`` shows an alerts panel with Acknowledge buttons; ``inject_fault`` (demo only)
    shows an "Inject fault" control offering ``fault_choices`` per machine (default: the
    simulator's machine faults for every machine).
    """

    def __init__(
        self,
        agent: Agent,
        history: HistoryBuffer,
        config: WebConfig,
        alerts: AlertsProvider | None = None,
        inject_fault: FaultInjector | None = None,
        *,
        fault_choices: Mapping[str, Sequence[str]] | None = None,
        update_interval: float = 1.0,
    ) -> None:
        self.agent = agent
        self.history = history
        self.config = config
        self.alerts = alerts
        self.inject_fault = inject_fault
        self.update_interval = update_interval
        machines = [p.machine.id for p in agent.pollers]
        self.fault_choices: dict[str, list[str]] | None = None
        if inject_fault is not None:
            chosen = fault_choices if fault_choices is not None else dict.fromkeys(machines, DEFAULT_FAULTS)
            self.fault_choices = {m: list(chosen.get(m, ())) for m in machines if chosen.get(m)}
        self.collector = AgentCollector(agent, history, alerts)
        self.metrics = Metrics(self.collector)
        self._auth = Authenticator(config)
        self.collector.rejected_logins = lambda: self._auth.rejected
        self._assets: dict[str, bytes] = {}
        self._runner: web.AppRunner | None = None
        self._updates: _Updates | None = None
        self._task: asyncio.Task[None] | None = None
        self._url: str | None = None

    @property
    def url(self) -> str:
        """``http://host:port/`` as bound (the real port when configured with 0)."""
        if self._url is None:
            raise RuntimeError("the status server is not started")
        return self._url

    async def start(self) -> None:
        """Check the login rule, load the assets and listen. Raises ``ConfigError`` or ``OSError``."""
        problem = self.config.login_problem()
        if problem is not None:
            raise ConfigError("web", [problem])
        self._assets = await asyncio.to_thread(_load_assets)
        app = web.Application(middlewares=[_errors, self._auth.middleware()], client_max_size=MAX_BODY)
        app.on_response_prepare.append(_security_headers)
        app.router.add_get("/", self._index)
        app.router.add_get("/static/{name}", self._static)
        app.router.add_get("/api/state", self._state)
        app.router.add_get("/api/events", self._events)
        app.router.add_get("/api/history/{machine}", self._machine_history)
        app.router.add_get("/api/history/{machine}/{tag}", self._tag_history)
        app.router.add_post("/api/alerts/{machine}/{alert_id}/ack", self._ack)
        app.router.add_post("/api/inject", self._inject)
        app.router.add_get("/metrics", self._metrics)
        runner = web.AppRunner(app, access_log=None, handle_signals=False, shutdown_timeout=SHUTDOWN_TIMEOUT_S)
        await runner.setup()
        site = web.TCPSite(runner, self.config.host, self.config.port)
        try:
            await site.start()
        except OSError as exc:
            await runner.cleanup()
            why = os.strerror(exc.errno).lower() if exc.errno else str(exc)
            raise OSError(
                f"status page: cannot listen on {self.config.host}:{self.config.port} ({why}). "
                "Fix: choose another web.port (0 = any free port) or stop what uses it"
            ) from exc
        self._runner = runner
        host, port = runner.addresses[0][:2]
        self._url = f"http://[{host}]:{port}/" if ":" in host else f"http://{host}:{port}/"
        self._updates = _Updates()
        self._task = asyncio.create_task(self._push_updates(self._updates), name="web:updates")
        login = "login required" if self.config.login_required else "no login (loopback only)"
        log.info("status page: %s (%s)", self._url, login)

    async def close(self) -> None:
        """End the live streams, stop listening. Idempotent."""
        if self._updates is not None:
            self._updates.close()
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)
            self._task = None
        if self._runner is not None:
            runner, self._runner = self._runner, None
            await runner.cleanup()

    async def __aenter__(self) -> StatusServer:
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    # -- state --------------------------------------------------------------------------------

    def state(self) -> dict[str, Any]:
        """What ``/api/state`` returns and each live update carries."""
        return state_json(self.agent, self.history, self.alerts, self.fault_choices, requests_per_cycle)

    def _state_bytes(self) -> bytes:
        return dumps(self.state()).encode()

    async def _push_updates(self, updates: _Updates) -> None:
        while not updates.closed:
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(self.update_interval):
                    await updates.kick.wait()
            updates.kick.clear()
            if updates.listeners and not updates.closed:
                updates.publish(self._state_bytes())

    def _push_now(self) -> None:
        if self._updates is not None:
            self._updates.kick.set()

    def _machine(self, request: web.Request) -> str:
        machine = request.match_info["machine"]
        known = [p.machine.id for p in self.agent.pollers]
        if machine not in known:
            raise RequestError(404, f"no machine {machine[:MAX_NAME]!r}; machines: {', '.join(known)}")
        return machine

    # -- handlers -----------------------------------------------------------------------------

    async def _index(self, request: web.Request) -> web.Response:
        return web.Response(body=self._assets["index.html"], content_type="text/html", charset="utf-8")

    async def _static(self, request: web.Request) -> web.Response:
        name = request.match_info["name"]
        if name not in ASSETS:
            raise RequestError(404, f"no asset {name[:MAX_NAME]!r}")
        response = web.Response(body=self._assets[name], content_type=ASSETS[name])
        if ASSETS[name].startswith("text/"):
            response.charset = "utf-8"
        return response

    async def _state(self, request: web.Request) -> web.Response:
        return web.Response(body=self._state_bytes(), content_type="application/json")

    async def _events(self, request: web.Request) -> web.StreamResponse:
        updates = self._updates
        if updates is None or updates.closed:
            raise RequestError(503, "the status server is stopping")
        response = web.StreamResponse(headers={"Cache-Control": "no-store", "X-Accel-Buffering": "no"})
        response.content_type = "text/event-stream"
        response.charset = "utf-8"
        await response.prepare(request)
        updates.listeners += 1
        self.collector.sse_clients = updates.listeners
        try:
            await response.write(b"retry: 2000\n\nevent: state\ndata: " + self._state_bytes() + b"\n\n")
            seq = updates.seq
            while (update := await updates.after(seq)) is not None:
                seq, payload = update
                await response.write(b"event: state\ndata: " + payload + b"\n\n")
        except ConnectionResetError:
            log.debug("status page: a live-update stream went away")
        finally:
            updates.listeners -= 1
            self.collector.sse_clients = updates.listeners
        return response

    def _history_json(self, machine: str, tag: str, seconds: float | None) -> dict[str, Any]:
        series = self.history.series(machine, tag, seconds)
        unit = self.history.latest(machine).get(tag)
        return {
            "machine": machine,
            "tag": tag,
            "unit": unit.unit if unit is not None else None,
            "t": [ns_to_ms(int(t)) for t in series.times_ns],
            "v": [round(float(v), 6) for v in series.values],
        }

    def _known_tags(self, machine: str) -> list[str]:
        poller = next(p for p in self.agent.pollers if p.machine.id == machine)
        names = [str(t.name) for t in getattr(poller.machine, "tags", None) or []]
        return names + [t for t in self.history.tags(machine) if t not in names]

    async def _tag_history(self, request: web.Request) -> web.Response:
        machine = self._machine(request)
        tag = request.match_info["tag"]
        tags = self._known_tags(machine)
        if tag not in tags:
            raise RequestError(404, f"machine {machine!r} has no tag {tag[:MAX_NAME]!r}; tags: {', '.join(tags)}")
        body = self._history_json(machine, tag, _seconds(request))
        return web.Response(text=dumps(body), content_type="application/json")

    async def _machine_history(self, request: web.Request) -> web.Response:
        machine = self._machine(request)
        seconds = _seconds(request)
        tags = [t for t in self._known_tags(machine) if self.history.has_series(machine, t)]
        body = {"machine": machine, "tags": [self._history_json(machine, t, seconds) for t in tags]}
        return web.Response(text=dumps(body), content_type="application/json")

    async def _ack(self, request: web.Request) -> web.Response:
        check_same_origin(request)
        if self.alerts is None:
            raise RequestError(404, "this agent has no alerts to acknowledge")
        machine = self._machine(request)
        alert_id = request.match_info["alert_id"]
        body = await _json_object(request, allow_empty=True)
        by = request.get(USER_KEY) or body.get("by") or "status page"
        if not isinstance(by, str) or not 0 < len(by) <= MAX_NAME:
            raise RequestError(400, f"'by' must be a name of 1-{MAX_NAME} characters")
        done = self.alerts.acknowledge(machine, alert_id, by)
        if inspect.isawaitable(done):
            done = await done
        if not done:
            raise RequestError(404, f"no active alert {alert_id[:MAX_NAME]!r} on machine {machine!r}")
        log.info("status page: alert %s on %s acknowledged by %s", alert_id, machine, by)
        self._push_now()
        return web.json_response({"acknowledged": True, "machine": machine, "alert_id": alert_id, "by": by})

    async def _inject(self, request: web.Request) -> web.Response:
        check_same_origin(request)
        if self.inject_fault is None or self.fault_choices is None:
            raise RequestError(404, "fault injection is only available in the demo (edge-agent demo)")
        body = await _json_object(request)
        machine, fault = body.get("machine"), body.get("fault")
        if not isinstance(machine, str) or not isinstance(fault, str):
            raise RequestError(400, 'send {"machine": "<machine id>", "fault": "<fault name>"}')
        if machine not in self.fault_choices:
            raise RequestError(404, f"no machine {machine[:MAX_NAME]!r}; machines: {', '.join(self.fault_choices)}")
        if fault not in self.fault_choices[machine]:
            choices = ", ".join(self.fault_choices[machine])
            raise RequestError(400, f"{machine} cannot have fault {fault[:MAX_NAME]!r}; choose one of: {choices}")
        try:
            async with asyncio.timeout(INJECT_TIMEOUT_S):
                await self.inject_fault(machine, fault)
        except TimeoutError as exc:
            raise RequestError(504, f"injecting {fault} on {machine} took longer than {INJECT_TIMEOUT_S:g} s") from exc
        except Exception as exc:
            log.warning("status page: injecting %s on %s failed: %s", fault, machine, exc)
            raise RequestError(422, f"could not inject {fault} on {machine}: {exc}") from exc
        log.info("status page: injected %s on %s", fault, machine)
        self._push_now()
        return web.json_response({"injected": True, "machine": machine, "fault": fault})

    async def _metrics(self, request: web.Request) -> web.Response:
        response = web.Response(body=self.metrics.render())
        response.headers["Content-Type"] = CONTENT_TYPE
        return response


def _seconds(request: web.Request) -> float | None:
    raw = request.query.get("seconds")
    if raw is None:
        return None
    try:
        seconds = float(raw)
    except ValueError:
        seconds = math.nan
    if not math.isfinite(seconds) or seconds <= 0:
        raise RequestError(400, f"seconds must be a positive number, got {raw[:MAX_NAME]!r}")
    return seconds


async def _json_object(request: web.Request, allow_empty: bool = False) -> dict[str, Any]:
    if allow_empty and not request.can_read_body:
        return {}
    try:
        body = await request.json()
    except ValueError as exc:
        raise RequestError(400, f"the body is not valid JSON: {exc}") from exc
    if body is None and allow_empty:
        return {}
    if not isinstance(body, dict):
        raise RequestError(400, "the body must be a JSON object")
    return body


async def _security_headers(request: web.Request, response: web.StreamResponse) -> None:
    response.headers.setdefault("Content-Security-Policy", CSP)
    response.headers.setdefault("X-Content-Type-Options", "nosniff")
    response.headers.setdefault("Referrer-Policy", "no-referrer")
    response.headers.setdefault("Cache-Control", "no-store")


def _load_assets() -> dict[str, bytes]:
    folder = resources.files("edge_agent.web") / "static"
    return {name: (folder / name).read_bytes() for name in ASSETS}
