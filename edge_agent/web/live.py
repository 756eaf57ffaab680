"""Live updates for the status page: one state, built once, streamed to every open tab (SSE).

One task (``web:updates``) builds the state once per ``interval`` while at least one browser
listens and hands the same bytes to every stream; a slow browser only skips intermediate
states, never holds the others back. Every stream is a connection and a task in the agent's
process, so there are at most ``limits.streams`` (more get 503 with ``Retry-After``), and a
browser that stops reading for ``limits.request_timeout`` is dropped rather than kept with its
unsent bytes. A stream opened with a session cookie ends when the cookie expires.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
from collections.abc import Callable

from aiohttp import web

from edge_agent.web.auth import SESSION_END_KEY
from edge_agent.web.config import WebLimits
from edge_agent.web.params import RequestError
from edge_agent.web.throttle import Clock

log = logging.getLogger(__name__)

RETRY_AFTER_S = 30


class _Latest:
    """The latest state bytes and a way to wait for the next ones (no queue per client)."""

    def __init__(self) -> None:
        self.seq = 0
        self.payload = b""
        self.closed = False
        self._next = asyncio.Event()

    def publish(self, payload: bytes) -> None:
        self.seq += 1
        self.payload = payload
        ready, self._next = self._next, asyncio.Event()
        ready.set()

    async def after(self, seq: int) -> tuple[int, bytes] | None:
        """The first state newer than ``seq``; None once closed."""
        while self.seq <= seq and not self.closed:
            await self._next.wait()
        return None if self.closed else (self.seq, self.payload)

    def close(self) -> None:
        self.closed = True
        self._next.set()


class LiveUpdates:
    """Streams ``build()`` to every listener; ``on_listeners`` hears the count change."""

    def __init__(
        self,
        build: Callable[[], bytes],
        interval: float,
        limits: WebLimits,
        clock: Clock,
        on_listeners: Callable[[int], None],
    ) -> None:
        self.build = build
        self.interval = interval
        self.limits = limits
        self.clock = clock
        self.on_listeners = on_listeners
        self.listeners = 0
        self._latest = _Latest()
        self._kick = asyncio.Event()
        self._task: asyncio.Task[None] | None = None

    def start(self) -> None:
        self._task = asyncio.create_task(self._push(), name="web:updates")

    async def close(self) -> None:
        """End every stream and the builder task. Idempotent."""
        self._latest.close()
        self._kick.set()
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)
            self._task = None

    def push_now(self) -> None:
        """Send a new state at once (after an acknowledge or an inject)."""
        self._kick.set()

    async def _push(self) -> None:
        latest = self._latest
        while not latest.closed:
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(self.interval):
                    await self._kick.wait()
            self._kick.clear()
            if self.listeners and not latest.closed:
                latest.publish(self.build())

    def _count(self, change: int) -> None:
        self.listeners += change
        self.on_listeners(self.listeners)

    async def handle(self, request: web.Request) -> web.StreamResponse:
        """``GET /api/events``."""
        latest = self._latest
        if latest.closed:
            raise RequestError(503, "the status server is stopping")
        if self.listeners >= self.limits.streams:
            raise RequestError(
                503,
                f"{self.listeners} live-update streams are open, the limit (web.limits.streams); "
                "close another tab showing the page or raise the limit",
                {"Retry-After": str(RETRY_AFTER_S)},
            )
        session_end = request.get(SESSION_END_KEY, math.inf)
        write_timeout = self.limits.request_timeout
        response = web.StreamResponse(headers={"Cache-Control": "no-store", "X-Accel-Buffering": "no"})
        response.content_type = "text/event-stream"
        response.charset = "utf-8"
        self._count(+1)  # before the first await, so a burst of requests cannot all pass the limit
        try:
            async with asyncio.timeout(write_timeout):
                await response.prepare(request)
                await response.write(b"retry: 2000\n\nevent: state\ndata: " + self.build() + b"\n\n")
            seq = latest.seq
            while (update := await latest.after(seq)) is not None and self.clock() < session_end:
                seq, payload = update
                # A browser that stops reading would hold its connection and the payloads for ever.
                async with asyncio.timeout(write_timeout):
                    await response.write(b"event: state\ndata: " + payload + b"\n\n")
        except (ConnectionResetError, TimeoutError):
            log.debug("status page: a live-update stream went away or stopped reading")
        finally:
            self._count(-1)
        return response
