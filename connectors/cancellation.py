"""Telling a real cancellation from a stray one that a protocol library let escape.

A ``CancelledError`` normally means someone asked the task to stop (the runtime's own timeout,
shutdown), and must propagate. But a library can also cancel a future it handed out (a request
in flight when the link went away), and that error then surfaces in a task nobody cancelled.
At the connector boundary such a stray cancellation is what it means: the link failed.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from contextlib import contextmanager

from edge_agent.core.errors import ConnectError


@contextmanager
def stray_cancellation_is_a_lost_link(machine_id: str) -> Iterator[None]:
    """Re-raise a real cancellation; turn one nobody asked for into ``ConnectError``."""
    try:
        yield
    except asyncio.CancelledError as exc:
        task = asyncio.current_task()
        if task is None or task.cancelling():
            raise
        raise ConnectError(machine_id, "a request was cancelled under the connector; the link went away") from exc
