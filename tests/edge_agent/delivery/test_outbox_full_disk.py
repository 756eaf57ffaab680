"""A really full disk: the outbox on a 600 KiB tmpfs mounted by the test, with the broker down.

SQLite's ``max_page_count`` (tests/edge_agent/delivery/test_outbox.py) gives the same error code,
but not the same trouble: on a real full disk even a DELETE and a checkpoint need room, so an
outbox without a reserve kept its oldest batches and dropped every new one while its WAL filled
the disk. Here the disk is real, the broker is a real Mosquitto stopped and started again, and
what arrives is counted by a plain paho subscriber. Mounting needs root (as in CI); elsewhere the
test is skipped and says why.
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import subprocess
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest

from edge_agent.core.origin import Origin
from edge_agent.delivery.config import MqttConfig, OutboxConfig
from edge_agent.delivery.publisher import MqttPublisher
from tests.helpers.mqtt import Subscriber
from tests.helpers.servers import Mosquitto, unique_name
from tests.helpers.telemetry import T0, batch
from tests.helpers.waiting import wait_until

DISK_BYTES = 600 * 1024
FED = 4000  # about 1 MiB of outbox entries: well past what the disk holds
ORIGIN = Origin("s", "a", "l", "m1")


@pytest.fixture
def small_disk(tmp_path: Path) -> Iterator[Path]:
    """A 600 KiB tmpfs of this test alone, unmounted afterwards."""
    mount_point = tmp_path / "disk"
    mount_point.mkdir()
    if os.geteuid() != 0:
        pytest.skip("mounting a small tmpfs needs root (CI and the dev container run as root)")
    mounted = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", f"size={DISK_BYTES // 1024}k", "tmpfs", str(mount_point)],
        capture_output=True,
        text=True,
        check=False,
    )
    if mounted.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here: {mounted.stderr.strip()}")
    try:
        yield mount_point
    finally:
        subprocess.run(["umount", str(mount_point)], check=True)


@pytest.fixture
async def publisher(small_disk: Path, fresh_mosquitto: Mosquitto, prefix: str) -> AsyncIterator[MqttPublisher]:
    config = MqttConfig(host=fresh_mosquitto.host, port=fresh_mosquitto.port, topic_prefix=prefix, keepalive=5)
    outbox = OutboxConfig(path=str(small_disk / "outbox.sqlite"), max_in_flight=50)
    pub = MqttPublisher(config, "s", client_id=unique_name("agent"), outbox=outbox)
    pub.backoff.initial, pub.backoff.cap = 0.1, 0.5
    await pub.start()
    try:
        yield pub
    finally:
        await pub.close()


def outbox_lines(caplog: pytest.LogCaptureFixture, level: int, text: str) -> list[str]:
    return [
        r.getMessage()
        for r in caplog.records
        if r.name == "edge_agent.delivery.outbox" and r.levelno == level and text in r.getMessage()
    ]


def file_bytes(path: Path) -> int:
    return path.stat().st_size if path.exists() else 0


async def fill_while_down(publisher: MqttPublisher, first: int) -> list[int]:
    """Feed ``FED`` batches with the broker down; the sample times of what the outbox kept."""
    for index in range(first, first + FED):
        await publisher.submit(batch(index), ORIGIN)
    kept = await publisher.outbox.read_after(0, 10 * FED)
    return [sample["t"] for entry in kept for sample in json.loads(entry.payload)["samples"]]


async def test_a_full_disk_drops_the_oldest_and_everything_kept_arrives(
    small_disk: Path,
    fresh_mosquitto: Mosquitto,
    subscriber: Subscriber,
    publisher: MqttPublisher,
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.INFO, logger="edge_agent.delivery.outbox")
    stats = publisher.outbox.stats
    path = publisher.outbox.path
    reserve = path.with_name(path.name + ".reserve")
    assert reserve.exists(), "the reserve for a full disk is set aside at start"
    await wait_until(lambda: publisher.connected, 15, "first connect")
    await asyncio.to_thread(fresh_mosquitto.stop)
    await wait_until(lambda: not publisher.connected, 15, "publisher sees the broker gone")

    kept = await fill_while_down(publisher, 0)

    assert stats.dropped_batches > FED // 4, "the disk filled up: batches had to go"
    assert stats.append_errors == 0, "no new batch was refused: room was made by dropping old ones"
    assert kept == [T0 + i for i in range(FED - len(kept), FED)], "the newest are kept, the oldest dropped"
    assert stats.entries + stats.dropped_batches == FED, "every batch is either waiting or counted as dropped"
    assert file_bytes(path) + file_bytes(path.with_name(path.name + "-wal")) < DISK_BYTES
    assert file_bytes(path.with_name(path.name + "-wal")) <= 128 * 1024, "the WAL stays small on a small disk"
    errors = outbox_lines(caplog, logging.ERROR, "DATA LOST")
    assert len(errors) == 1, errors
    assert "disk is full" in errors[0]
    assert "oldest first" in errors[0]

    await asyncio.to_thread(fresh_mosquitto.start)
    await wait_until(
        lambda: stats.entries == 0 and len(subscriber.samples) == len(kept),
        60,
        "everything kept is delivered",
        detail=lambda: (len(subscriber.samples), len(kept), stats),
    )
    assert sorted(t for (_m, _tag, t) in subscriber.samples) == kept, "exactly what was kept arrived"
    await wait_until(
        lambda: len(outbox_lines(caplog, logging.INFO, "no longer dropping")) == 1, 15, "the episode's end is logged"
    )
    next_index = FED

    async def polling_goes_on_and_the_reserve_is_back() -> bool:
        nonlocal next_index
        await publisher.submit(batch(next_index), ORIGIN)  # the plant keeps producing meanwhile
        next_index += 1
        return reserve.exists()

    await wait_until(polling_goes_on_and_the_reserve_is_back, 15, "the reserve is set aside again after the drain")
    await wait_until(lambda: stats.entries == 0, 15, "the batches sent meanwhile are delivered too")

    # A second outage on the same disk: the freed space was given back, so it works the same way again.
    await asyncio.to_thread(fresh_mosquitto.stop)
    await wait_until(lambda: not publisher.connected, 15, "publisher sees the broker gone again")
    dropped_before = stats.dropped_batches
    kept = await fill_while_down(publisher, next_index)
    assert stats.dropped_batches > dropped_before
    assert stats.append_errors == 0
    assert kept == [T0 + i for i in range(next_index + FED - len(kept), next_index + FED)]
    assert len(outbox_lines(caplog, logging.ERROR, "DATA LOST")) == 2, "one ERROR per episode"
    assert not outbox_lines(caplog, logging.ERROR, "NEW batches"), "no new batch was dropped at any time"
