"""The one way tests wait: on a condition, with a timeout, never sleep-and-hope.

``wait_until`` polls inside an event loop (the condition may be a coroutine function, for checks
that query a server); ``wait_until_sync`` does the same for code outside one. Both return as soon
as the condition holds and fail with ``message`` (and ``detail()``, if given) after ``timeout`` s.
"""

from __future__ import annotations

import asyncio
import inspect
import time
from collections.abc import Awaitable, Callable

INTERVAL_S = 0.05


def _timed_out(timeout: float, message: str, detail: Callable[[], object] | None) -> AssertionError:
    extra = f"\n{detail()}" if detail is not None else ""
    return AssertionError(f"timed out after {timeout:g} s waiting for: {message}{extra}")


async def wait_until(
    condition: Callable[[], bool | Awaitable[bool]],
    timeout: float,
    message: str,
    *,
    interval: float = INTERVAL_S,
    detail: Callable[[], object] | None = None,
) -> None:
    """Return as soon as ``condition()`` (or the awaitable it returns) is true."""
    deadline = time.monotonic() + timeout
    while True:
        result = condition()
        if inspect.isawaitable(result):
            result = await result
        if result:
            return
        if time.monotonic() > deadline:
            raise _timed_out(timeout, message, detail)
        await asyncio.sleep(interval)


def wait_until_sync(
    condition: Callable[[], bool],
    timeout: float,
    message: str,
    *,
    interval: float = INTERVAL_S,
    detail: Callable[[], object] | None = None,
) -> None:
    """The same for code outside an event loop."""
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise _timed_out(timeout, message, detail)
        time.sleep(interval)
