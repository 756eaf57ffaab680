"""The connector's deadlines treat asyncua's cancellation subclass (wait_for2) as the timeout it is."""

from __future__ import annotations

import asyncio

import pytest

from connectors.opcua.deadline import until, within


class CancelledWithResult(asyncio.CancelledError):
    """What asyncua's wait_for2 raises when a cancellation races with an answer that just arrived."""


async def answers_while_cancelled() -> None:
    try:
        await asyncio.sleep(10)
    except asyncio.CancelledError as exc:
        raise CancelledWithResult from exc


async def test_the_subclass_at_the_deadline_is_a_timeout_where_asyncio_timeout_lets_it_escape() -> None:
    with pytest.raises(CancelledWithResult):  # the behaviour being worked around (Python 3.11)
        async with asyncio.timeout(0.05):
            await answers_while_cancelled()
    with pytest.raises(TimeoutError):
        async with within(0.05):
            await answers_while_cancelled()
    with pytest.raises(TimeoutError):
        async with until(asyncio.get_running_loop().time() + 0.05):
            await asyncio.sleep(10)


async def test_a_real_cancellation_still_cancels() -> None:
    async def guarded() -> None:
        async with within(10):
            await answers_while_cancelled()

    task = asyncio.create_task(guarded())
    await asyncio.sleep(0.05)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert task.cancelled()
