"""Training windows wait on disk, not in RSS (the footprint), and come back exactly as they went in."""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
import pytest

from edge_agent.alerts.sink import AlertSink
from edge_agent.alerts.training import CHUNK_BYTES, TRAINING_FILE, TrainingBuffer
from models.features import Window
from simulators.dataset import Dataset
from tests.helpers.alert_sink import ORIGIN, WIDTH, batch, feature_windows, same
from tests.helpers.alert_sink import sink_config as config
from tests.helpers.datasets import record
from tests.helpers.waiting import wait_until


@pytest.fixture(scope="module")
def healthy_pump() -> Dataset:
    """Three healthy hours of a pump (simulated time, 1 s steps)."""
    return record("pump", 41, "3h", [])


def test_features_go_to_the_file_and_come_back_exactly(tmp_path: Path) -> None:
    path = tmp_path / "m1" / TRAINING_FILE
    buffer = TrainingBuffer(path)
    kept = feature_windows(100)
    for w in kept:
        buffer.append(w)
    assert len(buffer) == 100
    assert buffer.on_disk
    size = path.stat().st_size
    assert size % (WIDTH * 8) == 0  # whole feature vectors
    assert 0 <= 100 * WIDTH * 8 - size < CHUNK_BYTES  # all on disk but the last chunk in the making
    back = buffer.take()
    assert same(back, kept)
    assert len(buffer) == 0
    assert not path.exists()
    buffer.append(kept[0])  # the buffer starts over after a take
    assert same(buffer.take(), kept[:1])


def test_a_file_from_an_earlier_run_is_never_learned(tmp_path: Path) -> None:
    path = tmp_path / TRAINING_FILE
    path.write_bytes(np.ones(5 * WIDTH).tobytes())  # five windows an earlier run left behind
    buffer = TrainingBuffer(path)
    kept = feature_windows(3, seed=1)
    for w in kept:
        buffer.append(w)
    assert same(buffer.take(), kept)


def test_an_unwritable_folder_keeps_the_windows_in_memory_and_says_so(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    blocker = tmp_path / "data"
    blocker.write_text("a file where the machine's folder should be")
    buffer = TrainingBuffer(blocker / "m1" / TRAINING_FILE)
    kept = feature_windows(20, seed=2)
    with caplog.at_level(logging.WARNING, logger="edge_agent.alerts.training"):
        for w in kept:
            buffer.append(w)
    assert not buffer.on_disk
    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warnings) == 1, warnings  # said once, not once per window
    assert str(blocker / "m1" / TRAINING_FILE) in warnings[0]
    assert "Fix:" in warnings[0]
    assert same(buffer.take(), kept)  # nothing lost


def test_windows_of_another_width_are_refused(tmp_path: Path) -> None:
    buffer = TrainingBuffer(tmp_path / TRAINING_FILE)
    buffer.append(feature_windows(1)[0])
    with pytest.raises(ValueError, match="9 features after windows of 432"):
        buffer.append(Window(0.0, 60.0, np.zeros(9), 60, "running"))


async def test_the_sink_learns_from_the_file_and_removes_it(tmp_path: Path, healthy_pump: Dataset) -> None:
    sink = AlertSink(config(tmp_path, learn_after="2h"), on_alert=lambda origin, event: None)
    await sink.start()
    path = tmp_path / ORIGIN.machine / TRAINING_FILE
    sizes: list[int] = []
    try:
        for i in range(len(healthy_pump.time_s)):
            await sink.submit(batch(healthy_pump, i), ORIGIN)
            if i % 600 == 599:
                await wait_until(lambda: sink.idle(ORIGIN.machine), 30, "the sink to process its queue")
                stats = sink.stats(ORIGIN.machine)
                if stats.learned:
                    break
                sizes.append(path.stat().st_size if path.exists() else 0)
        await wait_until(lambda: sink.idle(ORIGIN.machine), 30, "the sink to process its queue")
        stats = sink.stats(ORIGIN.machine)
        assert stats.learned, stats
        assert sizes == sorted(sizes)
        assert sizes[-1] >= CHUNK_BYTES  # the windows waited in the file while two hours were collected
        assert not path.exists()  # read back once for learning, then deleted
    finally:
        await sink.close()
