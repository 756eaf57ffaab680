"""``asyncio.timeout`` that also catches asyncua's cancellation subclass.

asyncua waits with ``wait_for2``; when a deadline's cancellation races with an answer that just
arrived it raises ``CancelledWithResultError``, a subclass of ``CancelledError``. Python 3.11's
``asyncio.timeout`` turns only ``CancelledError`` itself into ``TimeoutError``, so the subclass
escapes, and the connector would report "the link went away" instead of "no answer in time"
(found by H2 against node-opcua). These wrappers fix that at the connector's boundary.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import AbstractAsyncContextManager, asynccontextmanager


@asynccontextmanager
async def until(when: float) -> AsyncIterator[None]:
    """Like ``asyncio.timeout_at(when)``; a cancellation subclass at or after ``when`` is a timeout too."""
    try:
        async with asyncio.timeout_at(when):
            yield
    except asyncio.CancelledError as exc:
        task = asyncio.current_task()
        expired = asyncio.get_running_loop().time() >= when
        if type(exc) is not asyncio.CancelledError and expired and task is not None and not task.cancelling():
            raise TimeoutError from exc
        raise


def within(seconds: float) -> AbstractAsyncContextManager[None]:
    """Like ``asyncio.timeout(seconds)`` (see ``until``)."""
    return until(asyncio.get_running_loop().time() + seconds)
