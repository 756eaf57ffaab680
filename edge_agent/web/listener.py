"""Accepting the status page's connections without letting a flood of them reach the agent.

The page runs in the agent's process: every socket it holds is a file descriptor the pollers,
the broker link and the outbox need too, and at the default limit of 1,024 a thousand idle
connections would leave none. asyncio's own accept loop, out of descriptors, logs a traceback
per attempt and keeps the page down. So the page accepts its connections itself:

- at most ``max_connections`` are open; at the limit the longest-open connection that is not
  serving a request (idle, or still sending its headers) is closed to make room, so a flood of
  idle sockets cannot lock out a real user, and if every one is busy the newcomer gets a 503;
- out of descriptors (or memory), it closes an idle connection and retries, else waits with a
  growing pause; the log gets one line when that starts (again at most once a minute while it
  lasts) and one when accepting works again, never a traceback;
- idle connections and headers that do not arrive in time are closed by aiohttp's keep-alive
  timeout, which the server sets to ``request_timeout``; a TLS handshake has as long;
- a malformed request is answered 400 by aiohttp, which would log an ERROR with a traceback for
  each one (anyone who can connect could fill the disk): ``PROTOCOL_LOG`` turns that into one
  short warning per kind of problem, then at most one a minute with the count.
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import logging
import os
import socket
import ssl
from collections.abc import Awaitable, Callable

from aiohttp import web
from aiohttp.typedefs import Middleware
from aiohttp.web_protocol import RequestHandler
from aiohttp.web_server import Server

from edge_agent.core.problems import ProblemLog, problem_kind

log = logging.getLogger(__name__)

BACKLOG = 128
OUT_OF_RESOURCES = frozenset({errno.EMFILE, errno.ENFILE, errno.ENOBUFS, errno.ENOMEM})
RETRY_FIRST_S = 0.05
RETRY_LONGEST_S = 1.0
_FULL_BODY = b'{"error": "the status page has too many connections; try again soon"}\n'
FULL = (
    b"HTTP/1.1 503 Service Unavailable\r\nRetry-After: 5\r\nContent-Type: application/json\r\n"
    b"Content-Length: %d\r\nConnection: close\r\n\r\n%s" % (len(_FULL_BODY), _FULL_BODY)
)

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]
MAX_REASON = 160


class _OneLinePerKind(logging.Filter):
    """Rewrites aiohttp's protocol errors as one traceback-free line per kind, throttled."""

    def __init__(self) -> None:
        super().__init__()
        self._problems = ProblemLog()

    def filter(self, record: logging.LogRecord) -> bool:
        if record.levelno < logging.WARNING:
            return True
        error = record.exc_info[1] if record.exc_info else None
        reason = f"{type(error).__name__}: {error}" if error is not None else record.getMessage()
        reason = repr(reason[:MAX_REASON])[1:-1]  # the client wrote it: no line breaks into the log
        skipped = self._problems.due(problem_kind(reason))
        if skipped is None:
            return False
        record.msg = "status page: a bad request (%s)%s"
        record.args = (reason, f"; {skipped} more like it since the last line" if skipped else "")
        record.exc_info = record.exc_text = None
        record.levelno, record.levelname = logging.WARNING, "WARNING"
        return True


PROTOCOL_LOG = logging.getLogger("edge_agent.web.http")
"""The logger aiohttp's connection handlers use instead of ``aiohttp.server``."""
PROTOCOL_LOG.addFilter(_OneLinePerKind())


def _bind(family: int, address: tuple[str, int] | tuple[str, int, int, int]) -> socket.socket:
    sock = socket.socket(family, socket.SOCK_STREAM)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        if family == socket.AF_INET6:
            sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 1)
        sock.bind(address)
        sock.listen(BACKLOG)
        sock.setblocking(False)
    except OSError:
        sock.close()
        raise
    return sock


class Busy:
    """The connections serving a request now; the others may be closed to make room."""

    def __init__(self) -> None:
        self._handlers: set[RequestHandler] = set()

    def __contains__(self, handler: object) -> bool:
        return handler in self._handlers

    def middleware(self) -> Middleware:
        """Marks a connection busy from its request's arrival until its response is written out."""

        @web.middleware
        async def busy(request: web.Request, handler: Handler) -> web.StreamResponse:
            protocol = request.protocol
            self._handlers.add(protocol)
            try:
                response = await handler(request)
                # Written here, not after this returns, so the connection counts as busy until
                # the last byte is handed to the socket (aiohttp skips what is already done).
                with contextlib.suppress(ConnectionResetError):  # the client left: nobody to tell
                    if not response.prepared:
                        await response.prepare(request)
                    await response.write_eof()
                return response
            finally:
                self._handlers.discard(protocol)

        return busy


class Listener:
    """Listens on every address ``host`` resolves to and hands connections to aiohttp's ``server``."""

    def __init__(
        self,
        server: Server,
        host: str,
        port: int,
        *,
        busy: Busy,
        max_connections: int,
        handshake_timeout: float,
        ssl_context: ssl.SSLContext | None = None,
    ) -> None:
        self.server = server
        self.host = host
        self.port = port
        self.max_connections = max_connections
        self.handshake_timeout = handshake_timeout
        self.ssl_context = ssl_context
        self.evicted = 0
        """Idle connections closed to make room for a new one."""
        self.refused = 0
        """Connections closed at once because every open one was busy."""
        self._sockets: list[socket.socket] = []
        self._tasks: set[asyncio.Task[None]] = set()
        self._busy = busy
        self._handshakes = 0
        self._problems = ProblemLog()
        self._failing = 0

    @property
    def addresses(self) -> list[tuple[str, int]]:
        """``(host, port)`` of each listening socket, as bound."""
        return [sock.getsockname()[:2] for sock in self._sockets]

    @property
    def open_connections(self) -> int:
        """Connections open or in their TLS handshake."""
        return self._handshakes + sum(1 for handler in self.server.connections if handler.transport is not None)

    async def start(self) -> None:
        """Bind and listen (raises ``OSError``), then accept in one task per socket."""
        loop = asyncio.get_running_loop()
        infos = await loop.getaddrinfo(self.host or None, self.port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE)
        port = self.port
        try:
            for family, _, _, _, address in dict.fromkeys(infos):  # in order, without repeats
                # Port 0: every address gets the port the first one drew, so the page has one URL.
                bound = (address[0], port, *address[2:]) if port else address
                self._sockets.append(_bind(family, bound))
                port = port or self._sockets[-1].getsockname()[1]
        except OSError:
            self._close_sockets()
            raise
        for sock in self._sockets:
            task = asyncio.create_task(self._accept(sock), name=f"web:accept:{sock.getsockname()[0]}")
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)

    async def close(self) -> None:
        """Stop accepting; the open connections are aiohttp's to close. Idempotent."""
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        self._close_sockets()

    def _close_sockets(self) -> None:
        for sock in self._sockets:
            sock.close()
        self._sockets.clear()

    def _evict_idle(self) -> bool:
        """Close the longest-open connection not serving a request; False if all are busy."""
        for handler in self.server.connections:  # oldest first
            if handler.transport is not None and handler not in self._busy:
                handler.force_close()
                self.evicted += 1
                if self._problems.due("evict") is not None:
                    log.warning(
                        "status page: %d connections open, the limit (web.limits.connections); closing the "
                        "longest-idle ones to make room (%d so far)",
                        self.max_connections,
                        self.evicted,
                    )
                return True
        return False

    async def _accept(self, sock: socket.socket) -> None:
        loop = asyncio.get_running_loop()
        pause = RETRY_FIRST_S
        while True:
            try:
                conn, peer = await loop.sock_accept(sock)
            except ConnectionAbortedError:
                continue
            except OSError as exc:
                if exc.errno in OUT_OF_RESOURCES and self._evict_idle():
                    await asyncio.sleep(0)  # let the closed one go before accepting again
                    continue
                self._accept_failed(exc)
                await asyncio.sleep(pause)
                pause = min(RETRY_LONGEST_S, pause * 2)
                continue
            pause = RETRY_FIRST_S
            if self._failing:
                log.warning("status page: accepting connections again after %d failed tries", self._failing)
                self._failing = 0
            self._admit(conn, peer)
            await asyncio.sleep(0)  # read what earlier connections sent before accepting more

    def _accept_failed(self, exc: OSError) -> None:
        self._failing += 1
        if (skipped := self._problems.due(f"accept {exc.errno}")) is not None:
            log.warning(
                "status page: cannot accept a connection: %s (%d page connections open, %d tries failed "
                "since the last line); retrying. Fix: raise the open-file limit (LimitNOFILE) or lower "
                "web.limits.connections",
                os_reason(exc),
                self.open_connections,
                skipped + 1,
            )

    def _admit(self, conn: socket.socket, peer: object) -> None:
        conn.setblocking(False)
        if self.open_connections >= self.max_connections and not self._evict_idle():
            self.refused += 1
            if self.ssl_context is None:
                with contextlib.suppress(OSError):
                    conn.send(FULL)
            conn.close()
            if (skipped := self._problems.due("full")) is not None:
                log.warning(
                    "status page: all %d connections busy (web.limits.connections); refused one from %s "
                    "(%d since the last line)",
                    self.max_connections,
                    peer,
                    skipped + 1,
                )
            return
        self._handshakes += 1
        task = asyncio.create_task(self._connect(conn), name="web:connection")
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _connect(self, conn: socket.socket) -> None:
        loop = asyncio.get_running_loop()
        try:
            if self.ssl_context is None:
                await loop.connect_accepted_socket(self.server, conn)
            else:
                await loop.connect_accepted_socket(
                    self.server, conn, ssl=self.ssl_context, ssl_handshake_timeout=self.handshake_timeout
                )
        except (OSError, TimeoutError) as exc:  # a client that left, or a failed TLS handshake
            log.debug("status page: a connection ended before its first request: %s", exc)
            conn.close()
        finally:
            self._handshakes -= 1


def os_reason(exc: OSError) -> str:
    """``too many open files`` rather than ``[Errno 24] Too many open files``."""
    return os.strerror(exc.errno).lower() if exc.errno else str(exc)
