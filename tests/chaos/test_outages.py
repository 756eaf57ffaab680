"""Chaos on the whole pipeline: every sample the agent read is in InfluxDB exactly once, or counted as dropped.

Outages are shortened to 5-10 s (a real site would test 60 s and more) so the folder runs in a few
minutes on a 2-core box; nothing in the agent depends on the length, only the backlog's size does,
and the bound test fills a small outbox on purpose. Each test ends with ``Rig.finish_and_check``:
machines stop, everything drains, both processes stop cleanly, and then

    samples appended by the agent == points in InfluxDB + samples counted as dropped,
    keys in InfluxDB == keys the broker delivered, each stored once.
"""

from __future__ import annotations

import asyncio

import pytest

from tests.chaos.conftest import Rig
from tests.helpers.waiting import wait_until

pytestmark = [pytest.mark.chaos, pytest.mark.timeout(240)]

OUTAGE_S = 6.0  # shortened from 60 s; see the module docstring


async def hold(seconds: float, rig: Rig) -> None:
    """Let the outage last while checking that polling goes on (the outbox keeps growing)."""
    await rig.wait_samples(10, within=15)
    await asyncio.sleep(max(0.0, seconds - 1))  # the outage itself is the point: its length is wall time


async def test_broker_and_database_restarts(make_rig: object) -> None:
    rig: Rig = await make_rig()  # type: ignore[operator]
    await asyncio.to_thread(rig.broker.stop)
    await hold(OUTAGE_S, rig)
    await asyncio.to_thread(rig.broker.start)
    await rig.wait_samples(50)
    await asyncio.to_thread(rig.influx.stop)
    await hold(OUTAGE_S, rig)
    await asyncio.to_thread(rig.influx.start)
    await rig.wait_samples(50)
    await rig.finish_and_check()


async def test_kill_9_of_agent_and_bridge(make_rig: object) -> None:
    """Each process is killed while it holds a backlog, the worst moment for it."""
    rig: Rig = await make_rig()  # type: ignore[operator]
    await wait_until(lambda: (rig.listener.status or {}).get("state") == "online", 10, "agent says online")
    await rig.kill9(rig.agent)  # in the middle of the stream
    # The broker publishes the agent's last will once the keepalive (2 s here) runs out.
    await wait_until(lambda: (rig.listener.status or {}).get("state") == "offline", 10, "last will: offline")
    await rig.start_agent()
    await rig.wait_samples(30)
    await asyncio.to_thread(rig.broker.stop)
    await hold(OUTAGE_S, rig)
    backlog = (await asyncio.to_thread(rig.outbox)).waiting_batches
    assert backlog > 20, "the agent holds a backlog"
    await rig.kill9(rig.agent)  # the backlog exists only in the outbox file now
    await rig.start_agent()
    await rig.wait_samples(30)
    await asyncio.to_thread(rig.broker.start)
    await rig.wait_samples(50)
    await asyncio.to_thread(rig.influx.stop)
    await hold(OUTAGE_S / 2, rig)
    await rig.kill9(rig.bridge)  # its unacked messages wait in the broker for the next bridge
    await rig.start_bridge()
    await hold(OUTAGE_S / 2, rig)
    await asyncio.to_thread(rig.influx.start)
    await rig.wait_samples(50)
    await rig.kill9(rig.bridge)  # and once more while it catches up
    await rig.start_bridge()
    await rig.wait_samples(50)
    await rig.finish_and_check()


async def test_network_cut_then_blackhole_between_agent_and_broker(make_rig: object) -> None:
    rig: Rig = await make_rig()  # type: ignore[operator]
    rig.proxy.set_mode("drop")  # connections reset, new ones refused
    await hold(OUTAGE_S, rig)
    rig.proxy.set_mode("pass")
    await rig.wait_samples(50)
    waiting_before = (await asyncio.to_thread(rig.outbox)).waiting_batches
    rig.proxy.set_mode("blackhole")  # packets vanish: only the MQTT keepalive (2 s here) notices
    await hold(OUTAGE_S + 2, rig)
    assert (await asyncio.to_thread(rig.outbox)).waiting_batches > waiting_before + 10, "a backlog built up"
    rig.proxy.set_mode("drop")  # the blackholed connection is gone for good, as after a router reboot
    rig.proxy.set_mode("pass")
    await rig.wait_samples(50)
    await rig.finish_and_check()


async def test_outbox_bound_during_a_long_outage(make_rig: object) -> None:
    """16 KiB hold ~3 s of this plant's batches; a 10 s broker outage overflows it on purpose."""
    rig: Rig = await make_rig(max_bytes=16384, max_in_flight=20)  # type: ignore[operator]
    await asyncio.to_thread(rig.broker.stop)
    await hold(10.0, rig)
    assert (await asyncio.to_thread(rig.outbox)).dropped_samples > 0, "the bound was reached"
    await asyncio.to_thread(rig.broker.start)
    await rig.wait_samples(50)
    final = await rig.finish_and_check(expect_drops=True)
    agent_log = "\n".join(p.read_text() for p in rig.directory.glob("run-*.log"))
    assert agent_log.count("DATA LOST") == 1, "one ERROR per episode"
    assert final.dropped_batches > 0

    def offline_with_counts() -> bool:
        status = rig.listener.status
        return status is not None and status["state"] == "offline" and "dropped" in status

    await wait_until(offline_with_counts, 10, "the retained offline status with the counters")
    assert rig.listener.status is not None
    assert rig.listener.status["dropped"] == {"batches": final.dropped_batches, "samples": final.dropped_samples}
    assert rig.listener.status["backlog"]["batches"] == 0
