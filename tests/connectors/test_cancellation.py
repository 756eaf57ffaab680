"""A cancellation someone asked for propagates; one a library let escape is a lost link."""

from __future__ import annotations

import asyncio

import pytest

from connectors.cancellation import stray_cancellation_is_a_lost_link
from edge_agent.core.errors import ConnectError


async def test_a_stray_cancellation_becomes_connect_error() -> None:
    loop = asyncio.get_running_loop()
    pending = loop.create_future()
    loop.call_soon(pending.cancel)  # the library cancels a request future it handed out
    with (
        pytest.raises(ConnectError, match="machine 'm': a request was cancelled under the connector"),
        stray_cancellation_is_a_lost_link("m"),
    ):
        await pending


async def test_a_requested_cancellation_propagates() -> None:
    started = asyncio.Event()

    async def poll() -> None:
        with stray_cancellation_is_a_lost_link("m"):
            started.set()
            await asyncio.Event().wait()

    task = asyncio.create_task(poll())
    await started.wait()
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task


async def test_a_timeout_still_times_out() -> None:
    async def poll() -> None:
        async with asyncio.timeout(0.01):
            with stray_cancellation_is_a_lost_link("m"):
                await asyncio.Event().wait()

    with pytest.raises(TimeoutError):
        await poll()
