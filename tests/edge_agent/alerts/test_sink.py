"""AlertSink end to end on simulator data: learns, alerts, explains, survives a restart.

Batches are built from the simulators' plant (simulated time, 1 s steps), shaped as a poll
of the simulators' registers would give them: every signal, ``state_code`` and ``parts_count``.
"""

from __future__ import annotations

import asyncio
import json
from pathlib import Path
from typing import Any

import pytest

from edge_agent.alerts.sink import AlertSink
from edge_agent.core.samples import Quality
from edge_agent.core.sinks import Sink
from simulators.dataset import Dataset
from tests.helpers.alert_sink import ORIGIN, batch, feed
from tests.helpers.alert_sink import sink_config as config
from tests.helpers.datasets import record
from tests.helpers.waiting import wait_until

EVENT_KEYS = {
    "schema", "event", "alert_id", "site", "area", "line", "machine", "active", "severity", "acknowledged",
    "acknowledged_by", "since", "at", "level", "peak_level", "score", "threshold", "operating_state", "detector",
    "model_version", "summary", "signals", "hint",
}  # fmt: skip


@pytest.fixture(scope="module")
def wearing_pump() -> Dataset:
    """Four healthy hours (with a stop), then bearing wear for two hours."""
    return record(
        "pump", 31, "6h", [{"fault": "bearing_wear", "at": "4h", "duration": "2h", "severity": 0.9, "ramp": "30m"}]
    )


async def test_learns_alerts_explains_and_persists(tmp_path: Path, wearing_pump: Dataset) -> None:
    events: list[dict[str, Any]] = []
    sink = AlertSink(config(tmp_path), lambda origin, event: events.append(event))
    as_sink: Sink = sink  # the runtime's Sink protocol, checked by mypy
    assert as_sink.name == "alerts"
    await sink.start()
    await feed(sink, wearing_pump, 0, 4 * 3600)
    stats = sink.stats("pump-1")
    assert stats.learned, stats
    assert stats.not_scored > 0  # idle and setup windows: no score, no alert
    assert stats.dropped_rows == 0
    assert events == [], "no alert on healthy data"
    assert (tmp_path / "pump-1" / "model.npz").exists()

    await feed(sink, wearing_pump, 4 * 3600, len(wearing_pump.time_s))
    await sink.close()
    await sink.close()  # idempotent
    raised = [e for e in events if e["event"] == "raised"]
    assert len(raised) == 1, events
    event = raised[0]
    assert set(event) == EVENT_KEYS
    json.dumps(event, allow_nan=False)
    assert event["machine"] == "pump-1"
    assert event["active"]
    assert event["schema"] == 1
    assert event["since"] >= "2026-01-01T04:00:00Z"
    assert event["signals"][0]["signal"] == "vibration_rms"
    assert event["model_version"] == stats.model_version
    saved = json.loads((tmp_path / "pump-1" / "alerts.json").read_text())
    assert saved["active"]
    assert saved["alert_id"] == event["alert_id"]


async def test_restart_keeps_model_and_open_alert(tmp_path: Path, wearing_pump: Dataset) -> None:
    events: list[dict[str, Any]] = []
    first = AlertSink(config(tmp_path), lambda o, e: events.append(e))
    await first.start()
    await feed(first, wearing_pump, 0, 5 * 3600)
    await first.close()
    raised = [e for e in events if e["event"] == "raised"]
    assert raised, "the wear must have raised an alert before the restart"

    events.clear()
    second = AlertSink(config(tmp_path), lambda o, e: events.append(e))
    await second.start()
    await feed(second, wearing_pump, 5 * 3600, 5 * 3600 + 600)
    assert second.stats("pump-1").learned
    assert second.stats("pump-1").training_windows == 0, "the saved model was used, not relearned"
    assert await second.acknowledge("pump-1", "maintenance on call")
    assert not await second.acknowledge("pump-1", "again")
    await second.close()
    assert [e["event"] for e in events] == ["acknowledged"]
    assert events[0]["alert_id"] == raised[0]["alert_id"]
    assert events[0]["acknowledged_by"] == "maintenance on call"


async def test_a_tampered_model_is_rejected_and_relearned(tmp_path: Path, wearing_pump: Dataset) -> None:
    folder = tmp_path / "pump-1"
    folder.mkdir()
    (folder / "model.npz").write_bytes(b"PK\x03\x04 not really a model")
    sink = AlertSink(config(tmp_path), lambda o, e: None)
    await sink.start()
    await feed(sink, wearing_pump, 0, 3600)
    await sink.close()
    assert (folder / "model.npz.rejected").exists()
    assert not sink.stats("pump-1").learned  # learning afresh: one hour is not enough yet


async def test_learning_runs_while_the_event_loop_keeps_running(tmp_path: Path, wearing_pump: Dataset) -> None:
    """Learning and scoring run in a worker thread: other tasks of the loop run meanwhile.

    How long submit and the loop stall while an isolation forest learns is measured against a
    baseline by bench/alert_sink_loop.py; here only that it happens alongside a live loop.
    """
    sink = AlertSink(config(tmp_path, detector="iforest"), lambda o, e: None)
    await sink.start()
    beats = 0
    stop = asyncio.Event()

    async def heartbeat() -> None:
        nonlocal beats
        while not stop.is_set():
            await asyncio.sleep(0.01)
            beats += 1

    beat = asyncio.create_task(heartbeat(), name="heartbeat")
    for i in range(4 * 3600):
        await sink.submit(batch(wearing_pump, i), ORIGIN)
        if i % 500 == 0:
            await asyncio.sleep(0)
    await wait_until(lambda: sink.stats("pump-1").learned, 60, "the iforest model to be learned")
    stop.set()
    await beat
    await sink.close()
    assert beats > 0, "the loop never ran another task while the sink worked"


async def test_a_machine_going_down_leaves_a_gap(tmp_path: Path, wearing_pump: Dataset) -> None:
    sink = AlertSink(config(tmp_path), lambda o, e: None)
    await sink.start()
    await feed(sink, wearing_pump, 0, 600)
    sink.machine_state_changed(ORIGIN, "down", "connect timed out")
    await feed(sink, wearing_pump, 700, 1300)
    stats = sink.stats("pump-1")
    await sink.close()
    assert stats.windows + stats.skipped_windows < 1300 / 30  # no window bridges the outage


def test_config_rejects_nonsense(tmp_path: Path) -> None:
    from pydantic import ValidationError

    with pytest.raises(ValidationError, match="unknown detector"):
        config(tmp_path, detector="magic")
    with pytest.raises(ValidationError, match=r"k .* must not exceed n"):
        config(tmp_path, k=6, n=5)
    with pytest.raises(ValidationError, match="learn_after 10m gives 20 windows of 60s every 30s"):
        config(tmp_path, learn_after="10m")
    with pytest.raises(ValidationError, match="extra"):
        config(tmp_path, windw="60s")
    with pytest.raises(ValidationError, match="swap"):
        config(tmp_path, state={"signal": "i", "off_below": 9, "running_above": 1})
    assert config(tmp_path, window="2m", hop="1m").window == 120
    assert Quality.GOOD  # samples of other qualities are ignored (see batch())
