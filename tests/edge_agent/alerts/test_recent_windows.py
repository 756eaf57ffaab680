"""Scheduled retraining keeps its recent normal windows in a ring file, not in RSS (the footprint).

The ring must do exactly what the in-memory ``deque(maxlen=capacity)`` it replaces did: keep the
newest windows in order, forget the oldest when full, and drop the windows that led up to a
raised alert; a retrain from it must learn the same model as one from memory.
"""

from __future__ import annotations

import logging
import random
import resource
from collections import deque
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from edge_agent.alerts.recent import RECENT_FILE, RecentWindows
from edge_agent.alerts.sink import AlertSink
from edge_agent.alerts.training import chunk_rows
from edge_agent.core.errors import ModelError
from edge_agent.core.origin import Origin
from models.features import Window
from simulators.dataset import Dataset
from tests.helpers.alert_sink import HOUR, WIDTH, feature_windows, feed, same
from tests.helpers.alert_sink import retrain_config as config

LOGGER = "edge_agent.alerts"


def warnings_of(caplog: pytest.LogCaptureFixture) -> list[str]:
    return [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]


def test_the_ring_keeps_the_newest_windows_in_order_past_capacity(tmp_path: Path) -> None:
    path = tmp_path / "m1" / RECENT_FILE
    ring = RecentWindows(path, capacity=50)
    fed = feature_windows(137)
    for i, w in enumerate(fed, start=1):
        ring.append(w)
        if i in (1, 19, 49, 50, 51, 69, 100, 137):  # before, at and after chunk and wrap boundaries
            assert len(ring) == min(i, 50)
            assert same(ring.windows(), fed[max(0, i - 50) : i]), f"after {i} windows"
    assert ring.on_disk
    assert path.stat().st_size == 50 * WIDTH * 8, "the file is the ring: it never grows past capacity rows"
    assert same(ring.windows(), fed[-50:]), "reading back does not consume: the next retrain sees them again"


def test_a_small_machine_wraps_in_the_file_too(tmp_path: Path) -> None:
    """Three signals: a 64 KiB chunk would hold more windows than the ring has room for."""
    width = 27
    assert chunk_rows(width) > 40
    ring = RecentWindows(tmp_path / RECENT_FILE, capacity=40)
    rng = np.random.default_rng(3)
    fed = [Window(30.0 * i, 30.0 * i + 60, rng.normal(size=width), 60, "running") for i in range(101)]
    for w in fed:
        ring.append(w)
    assert (tmp_path / RECENT_FILE).stat().st_size == 40 * width * 8
    assert same(ring.windows(), fed[-40:])


@pytest.mark.parametrize("seed", [1, 2, 3])
def test_it_keeps_exactly_what_the_in_memory_deque_kept(tmp_path: Path, seed: int) -> None:
    """Random appends and drops (a raise drops the n - 1 windows before it), checked against a deque."""
    rnd = random.Random(seed)
    ring = RecentWindows(tmp_path / RECENT_FILE, capacity=45)
    reference: deque[Window] = deque(maxlen=45)
    fed = iter(feature_windows(1000, seed=seed))
    for step in range(700):
        if rnd.random() < 0.85:
            w = next(fed)
            ring.append(w)
            reference.append(w)
        else:
            k = rnd.randint(0, 25)  # sometimes more than the pending chunk, sometimes more than all
            ring.drop_newest(k)
            for _ in range(min(k, len(reference))):
                reference.pop()
        assert len(ring) == len(reference)
        if step % 37 == 0 or step == 699:
            assert same(ring.windows(), list(reference)), f"seed {seed}, step {step}"


def test_the_windows_before_a_raise_are_never_learned(tmp_path: Path) -> None:
    ring = RecentWindows(tmp_path / RECENT_FILE, capacity=60)
    fed = feature_windows(200, seed=4)
    lead_up: list[Window] = []
    for i, w in enumerate(fed):
        ring.append(w)
        if i in (40, 95, 160):  # an alert is raised on the window after: the n - 1 = 4 before it go
            lead_up += fed[i - 3 : i + 1]
            ring.drop_newest(4)
    kept = ring.windows()
    assert len(kept) == 60
    assert not any(w.start_s == x.start_s for w in kept for x in lead_up)
    assert same(kept, [w for w in fed if not any(w is x for x in lead_up)][-60:])


def test_a_file_from_an_earlier_run_is_never_read(tmp_path: Path) -> None:
    path = tmp_path / RECENT_FILE
    path.write_bytes(np.ones(80 * WIDTH).tobytes())  # a full ring an earlier run left behind
    ring = RecentWindows(path, capacity=80)
    fed = feature_windows(25, seed=5)
    for w in fed:
        ring.append(w)
    assert same(ring.windows(), fed)
    assert path.stat().st_size == chunk_rows(WIDTH) * WIDTH * 8, "replaced (one chunk written so far), not reused"


def test_an_unwritable_folder_keeps_them_in_memory_and_says_so_once(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    blocker = tmp_path / "data"
    blocker.write_text("a file where the machine's folder should be")
    path = blocker / "m1" / RECENT_FILE
    ring = RecentWindows(path, capacity=30)
    fed = feature_windows(95, seed=6)
    with caplog.at_level(logging.WARNING, logger=LOGGER):
        for w in fed:
            ring.append(w)
        ring.drop_newest(2)
    assert not ring.on_disk
    said = warnings_of(caplog)
    assert len(said) == 1, said
    assert str(path) in said[0]
    assert "recent normal windows" in said[0]
    assert "Fix:" in said[0]
    assert same(ring.windows(), fed[-30:-2]), "nothing lost: the ring goes on in memory"


def test_a_full_disk_mid_run_moves_every_window_to_memory(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    """A file size limit stands in for a full disk: writes past it fail (EFBIG), reads still work."""
    path = tmp_path / RECENT_FILE
    ring = RecentWindows(path, capacity=100)
    fed = feature_windows(90, seed=10)
    per_chunk = chunk_rows(WIDTH)
    soft, hard = resource.getrlimit(resource.RLIMIT_FSIZE)
    resource.setrlimit(resource.RLIMIT_FSIZE, (2 * per_chunk * WIDTH * 8, hard))  # room for two chunks
    try:
        with caplog.at_level(logging.WARNING, logger=LOGGER):
            for w in fed:
                ring.append(w)
    finally:
        resource.setrlimit(resource.RLIMIT_FSIZE, (soft, hard))
    said = warnings_of(caplog)
    assert len(said) == 1, said
    assert str(path) in said[0]
    assert not ring.on_disk
    assert not path.exists(), "the file's windows were read back and its space given back"
    assert same(ring.windows(), fed), "nothing lost"


def test_a_file_lost_while_running_keeps_the_newest_windows(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    path = tmp_path / RECENT_FILE
    ring = RecentWindows(path, capacity=100)
    fed = feature_windows(80, seed=8)
    per_chunk = chunk_rows(WIDTH)
    for w in fed[: per_chunk + 1]:
        ring.append(w)
    path.unlink()
    path.mkdir()  # the next chunk cannot be written, and the first one cannot be read back
    with caplog.at_level(logging.WARNING, logger=LOGGER):
        for w in fed[per_chunk + 1 :]:
            ring.append(w)
    said = warnings_of(caplog)
    assert len(said) == 2, said  # the write, and that what was written is gone too: not once per window
    assert all(str(path) in s for s in said)
    assert same(ring.windows(), fed[per_chunk:])


def test_a_ring_that_cannot_be_read_back_fails_the_retrain_and_starts_afresh(tmp_path: Path) -> None:
    path = tmp_path / RECENT_FILE
    ring = RecentWindows(path, capacity=100)
    fed = feature_windows(40, seed=9)
    for w in fed:
        ring.append(w)
    path.write_bytes(b"")  # e.g. someone truncated it
    with pytest.raises(ModelError, match=f"{path}: recent windows cannot be read back"):
        ring.windows()
    assert len(ring) == 0
    ring.append(fed[0])
    assert same(ring.windows(), fed[:1])


class Scores:
    """Every score the sink sends, without the model version (a checksum that includes the training time)."""

    def __init__(self) -> None:
        self.rows: list[tuple[float, float, float]] = []
        self.versions: list[str] = []

    def __call__(self, origin: Origin, score: dict[str, Any]) -> None:
        self.rows.append((score["score"], score["threshold"], score["level"]))
        if not self.versions or self.versions[-1] != score["model_version"]:
            self.versions.append(score["model_version"])


async def test_a_retrain_from_the_file_learns_what_one_from_memory_learns(
    tmp_path: Path, healthy_pump: Dataset, caplog: pytest.LogCaptureFixture
) -> None:
    """Two sinks, one hour to learn, hourly retrains on 1 h of windows (a ring of 120), 4.5 h of data.

    The second one's ring file cannot be created (a folder is in its way), so it keeps its
    windows in memory as the agent did before: both must retrain alike and score alike.
    """
    on_disk, in_memory = tmp_path / "disk", tmp_path / "memory"
    (in_memory / "pump-1" / RECENT_FILE).mkdir(parents=True)
    results: list[tuple[Scores, int]] = []
    with caplog.at_level(logging.WARNING, logger=LOGGER):
        for data_dir in (on_disk, in_memory):
            scores = Scores()
            sink = AlertSink(config(data_dir), lambda o, e: None, on_score=scores)
            await sink.start()
            try:
                await feed(sink, healthy_pump, 0, int(4.5 * HOUR))
                results.append((scores, sink.stats("pump-1").retrains))
            finally:
                await sink.close()
            if data_dir == on_disk:
                assert warnings_of(caplog) == []
    (disk_scores, disk_retrains), (memory_scores, memory_retrains) = results
    assert disk_retrains >= 2, "the schedule still retrains"
    assert len(disk_scores.versions) == disk_retrains + 1, "every retrain puts a new model version on the scores"
    width = len(healthy_pump.signals) * 9
    assert (on_disk / "pump-1" / RECENT_FILE).stat().st_size == 120 * width * 8, "the windows waited in the ring"
    assert len({threshold for _, threshold, _ in disk_scores.rows}) >= 2, "a retrain changes the threshold"
    assert memory_retrains == disk_retrains
    assert memory_scores.rows == disk_scores.rows, "same windows learned: same thresholds, same scores"
    said = warnings_of(caplog)
    assert len(said) == 1, said
    assert str(in_memory / "pump-1" / RECENT_FILE) in said[0]

    restarted = AlertSink(config(on_disk, retrain_every=None), lambda o, e: None)
    await restarted.start()
    try:
        await feed(restarted, healthy_pump, int(4.5 * HOUR), int(4.5 * HOUR) + 60)
    finally:
        await restarted.close()
    assert not (on_disk / "pump-1" / RECENT_FILE).exists(), "an earlier run's ring is removed at start, never used"
