"""The status page server: one page, a JSON API, live updates over Server-Sent Events, ``/metrics``.

It runs inside the agent's event loop (aiohttp), reading the same objects the pollers update,
so there is nothing to synchronise and nothing to store. Every asset is bundled in the package
(``static/``) and the Content-Security-Policy allows this origin only: line PCs are offline, and
a page that quietly fetches a CDN would show nothing there.

Live updates (``live``): the state is built once per ``update_interval`` while a browser listens
and the same bytes go to every stream. Acknowledge and inject push an update at once.

Errors: every failure is a JSON ``{"error": message}`` with a 4xx status for a bad request
(malformed JSON, unknown machine or tag, wrong method) and a plain 500 without a traceback for a
bug (the traceback goes to the agent's log).

Hostile clients: connections are accepted by ``listener`` (a cap, idle ones make room, quiet
when out of file descriptors), live-update streams are capped and a stream whose browser stops
reading is dropped, guessed passwords are slowed per address (``auth``), and every query number
and body is checked by ``params``. A flood on the page must not be felt by the pollers.
"""

from __future__ import annotations

import asyncio
import inspect
import logging
import math
import ssl
import time
from collections.abc import Mapping, Sequence
from importlib import resources
from typing import TYPE_CHECKING, Any

from aiohttp import web

from edge_agent.core.errors import ConfigError, Forbidden, LoginRequired, TooManyAttempts
from edge_agent.web.auth import USER_KEY, Authenticator, check_same_origin
from edge_agent.web.config import WebConfig, WebTls
from edge_agent.web.listener import PROTOCOL_LOG, Busy, Listener, os_reason
from edge_agent.web.live import LiveUpdates
from edge_agent.web.metrics import CONTENT_TYPE, AgentCollector, Metrics, requests_per_cycle
from edge_agent.web.params import MAX_NAME, RequestError, json_object, seconds_param
from edge_agent.web.snapshot import DEFAULT_FAULTS, AlertsProvider, FaultInjector, dumps, ns_to_ms, state_json
from edge_agent.web.throttle import Clock

if TYPE_CHECKING:
    from edge_agent.web.history import HistoryBuffer
    from edge_agent.web.view import AgentView

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
INJECT_TIMEOUT_S = 10.0
SHUTDOWN_TIMEOUT_S = 2.0


def _error(status: int, message: str, headers: Mapping[str, str] | None = None) -> web.Response:
    return web.Response(status=status, text=dumps({"error": message}), content_type="application/json", headers=headers)


def _refusal(exc: RequestError | TooManyAttempts | LoginRequired | Forbidden) -> web.Response:
    """The JSON answer to a request refused on purpose, with the headers that say what to do."""
    if isinstance(exc, RequestError):
        return _error(exc.status, str(exc), exc.headers)
    if isinstance(exc, TooManyAttempts):
        return _error(429, str(exc), {"Retry-After": str(max(1, math.ceil(exc.retry_after)))})
    if isinstance(exc, LoginRequired):
        return _error(401, str(exc), {"WWW-Authenticate": exc.challenge})
    return _error(403, str(exc))


@web.middleware
async def _errors(request: web.Request, handler: Any) -> web.StreamResponse:
    """Every failure as JSON; no traceback ever reaches the browser."""
    try:
        response: web.StreamResponse = await handler(request)
    except (RequestError, TooManyAttempts, LoginRequired, Forbidden) as exc:
        return _refusal(exc)
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


class StatusServer:
    """Serves the status page for ``agent`` from ``history`` (a sink the agent feeds).

    ``alerts`` shows an alerts panel with Acknowledge buttons; ``inject_fault`` (demo only)
    shows an "Inject fault" control offering ``fault_choices`` per machine (default: the
    simulator's machine faults for every machine). ``clock`` (Unix seconds) times login waits
    and session cookies.
    """

    def __init__(
        self,
        agent: AgentView,
        history: HistoryBuffer,
        config: WebConfig,
        alerts: AlertsProvider | None = None,
        inject_fault: FaultInjector | None = None,
        *,
        fault_choices: Mapping[str, Sequence[str]] | None = None,
        update_interval: float = 1.0,
        clock: Clock = time.time,
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
        self.clock = clock
        self._auth = Authenticator(config, clock)
        self.collector.rejected_logins = lambda: self._auth.rejected
        self._assets: dict[str, bytes] = {}
        self._runner: web.AppRunner | None = None
        self._listener: Listener | None = None
        self._live: LiveUpdates | None = None
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
        context = await asyncio.to_thread(_tls_context, self.config.tls) if self.config.tls else None
        busy = Busy()
        app = web.Application(
            middlewares=[busy.middleware(), _errors, self._auth.middleware()], client_max_size=MAX_BODY
        )
        app.on_response_prepare.append(_security_headers)
        app.on_response_prepare.append(self._auth.on_prepare)
        app.router.add_get("/", self._index)
        app.router.add_get("/static/{name}", self._static)
        app.router.add_get("/api/state", self._state)
        app.router.add_get("/api/events", self._events)
        app.router.add_get("/api/history/{machine}", self._machine_history)
        app.router.add_get("/api/history/{machine}/{tag}", self._tag_history)
        app.router.add_post("/api/alerts/{machine}/{alert_id}/ack", self._ack)
        app.router.add_post("/api/inject", self._inject)
        app.router.add_get("/metrics", self._metrics)
        limits = self.config.limits
        runner = web.AppRunner(
            app,
            access_log=None,
            handle_signals=False,
            shutdown_timeout=SHUTDOWN_TIMEOUT_S,
            keepalive_timeout=limits.request_timeout,  # also closes connections whose headers do not come
            logger=PROTOCOL_LOG,
        )
        await runner.setup()
        assert runner.server is not None
        listener = Listener(
            runner.server,
            self.config.host,
            self.config.port,
            busy=busy,
            max_connections=limits.connections,
            handshake_timeout=limits.request_timeout,
            ssl_context=context,
        )
        try:
            await listener.start()
        except OSError as exc:
            await runner.cleanup()
            raise OSError(
                f"status page: cannot listen on {self.config.host}:{self.config.port} ({os_reason(exc)}). "
                "Fix: choose another web.port (0 = any free port) or stop what uses it"
            ) from exc
        self._runner, self._listener = runner, listener
        host, port = listener.addresses[0]
        where = f"[{host}]:{port}" if ":" in host else f"{host}:{port}"
        self._url = f"{self.config.scheme}://{where}/"
        self._live = LiveUpdates(self._state_bytes, self.update_interval, limits, self.clock, self._on_listeners)
        self._live.start()
        login = "login required" if self.config.login_required else "no login (loopback only)"
        log.info("status page: %s (%s)", self._url, login)

    async def close(self) -> None:
        """End the live streams, stop listening. Idempotent."""
        if self._live is not None:
            await self._live.close()
        if self._listener is not None:
            listener, self._listener = self._listener, None
            await listener.close()
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

    def _on_listeners(self, count: int) -> None:
        self.collector.sse_clients = count

    def _push_now(self) -> None:
        if self._live is not None:
            self._live.push_now()

    def _seconds(self, request: web.Request) -> float | None:
        return seconds_param(request, self.history.window_ns / 1e9)

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
        if self._live is None:
            raise RequestError(503, "the status server is stopping")
        return await self._live.handle(request)

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
        body = self._history_json(machine, tag, self._seconds(request))
        return web.Response(text=dumps(body), content_type="application/json")

    async def _machine_history(self, request: web.Request) -> web.Response:
        machine = self._machine(request)
        seconds = self._seconds(request)
        tags = [t for t in self._known_tags(machine) if self.history.has_series(machine, t)]
        body = {"machine": machine, "tags": [self._history_json(machine, t, seconds) for t in tags]}
        return web.Response(text=dumps(body), content_type="application/json")

    async def _ack(self, request: web.Request) -> web.Response:
        check_same_origin(request)
        if self.alerts is None:
            raise RequestError(404, "this agent has no alerts to acknowledge")
        machine = self._machine(request)
        alert_id = request.match_info["alert_id"]
        body = await json_object(request, self.config.limits.request_timeout, allow_empty=True)
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
        body = await json_object(request, self.config.limits.request_timeout)
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


async def _security_headers(request: web.Request, response: web.StreamResponse) -> None:
    response.headers.setdefault("Content-Security-Policy", CSP)
    response.headers.setdefault("X-Content-Type-Options", "nosniff")
    response.headers.setdefault("Referrer-Policy", "no-referrer")
    response.headers.setdefault("Cache-Control", "no-store")


def _tls_context(tls: WebTls) -> ssl.SSLContext:
    """A server context (TLS 1.2 or newer) from the configured PEM files; ``ConfigError`` with the fix."""
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    try:
        context.load_cert_chain(tls.cert, tls.key)
    except (OSError, ssl.SSLError) as exc:
        reason = exc.strerror or str(exc) if isinstance(exc, OSError) and exc.strerror else str(exc)
        raise ConfigError(
            "web",
            [
                f"web.tls: cannot load the certificate {tls.cert!r} with the key {tls.key!r} ({reason}). "
                "Fix: point cert and key at the PEM files of one certificate, readable by the agent"
            ],
        ) from exc
    return context


def _load_assets() -> dict[str, bytes]:
    folder = resources.files("edge_agent.web") / "static"
    return {name: (folder / name).read_bytes() for name in ASSETS}
