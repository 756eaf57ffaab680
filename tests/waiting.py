"""Wait on conditions with a timeout instead of sleeping and hoping."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable


async def eventually(
    condition: Callable[[], bool],
    timeout: float,
    what: str,
    poll: float = 0.05,
    detail: Callable[[], object] | None = None,
) -> None:
    """Return as soon as ``condition()`` holds; fail with ``what`` (and ``detail()``) after ``timeout`` s."""
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            extra = f"\n{detail()}" if detail is not None else ""
            raise AssertionError(f"timed out after {timeout:g} s waiting for: {what}{extra}")
        await asyncio.sleep(poll)


def eventually_sync(condition: Callable[[], bool], timeout: float, what: str, poll: float = 0.05) -> None:
    """The same for code outside an event loop."""
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout:g} s waiting for: {what}")
        time.sleep(poll)
