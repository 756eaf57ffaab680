"""Scheduled retraining, kept model versions, the newest loaded at start, a pinned version.

Simulated time: a healthy simulated pump (1 s rows, sample timestamps from 2026-01-01) goes
through AlertSink as fast as it can take it, so hours of "operation" take seconds and the
schedule follows the samples' own clock.
"""

from __future__ import annotations

import argparse
import logging
import re
from pathlib import Path
from typing import Any

import pytest
from pydantic import ValidationError

from edge_agent.alerts.config import AlertsConfig
from edge_agent.alerts.sink import AlertSink
from edge_agent.alerts.versions import MODEL_FILE, VERSIONS_DIR, stored_models
from edge_agent.commands.model import register
from edge_agent.core.origin import Origin
from simulators.dataset import Dataset
from tests.helpers.alert_sink import HOUR, feed
from tests.helpers.alert_sink import retrain_config as config
from tests.helpers.datasets import record


def run(*argv: str) -> int:
    parser = argparse.ArgumentParser()
    register(parser.add_subparsers(dest="command", required=True))
    args = parser.parse_args(list(argv))
    code: int = args.func(args)
    return code


class Scores:
    """The model version on every score the sink sends, in order."""

    def __init__(self) -> None:
        self.versions: list[str] = []

    def __call__(self, origin: Origin, score: dict[str, Any]) -> None:
        self.versions.append(score["model_version"])

    def distinct(self) -> list[str]:
        return [v for i, v in enumerate(self.versions) if i == 0 or v != self.versions[i - 1]]


async def test_retrains_on_schedule_keeps_versions_and_loads_the_newest(
    tmp_path: Path, healthy_pump: Dataset, capsys: pytest.CaptureFixture[str]
) -> None:
    folder = tmp_path / "pump-1"
    scores = Scores()
    sink = AlertSink(config(tmp_path), lambda o, e: None, on_score=scores)
    await sink.start()
    await feed(sink, healthy_pump, 0, int(4.5 * HOUR))
    stats = sink.stats("pump-1")
    await sink.close()
    assert stats.learned
    assert stats.retrains >= 2, stats
    seen = scores.distinct()
    assert len(seen) == stats.retrains + 1, "every retrain puts a new version on the scores"
    assert seen[-1] == stats.model_version
    kept = stored_models(folder)
    assert [s.version for s in kept] == [seen[-1], seen[-2]], "keep_models 2: the current one and the one before"
    assert kept[0].path == folder / MODEL_FILE
    assert kept[1].path.parent == folder / VERSIONS_DIR
    assert len(list((folder / VERSIONS_DIR).iterdir())) == 1

    again = Scores()
    restarted = AlertSink(config(tmp_path), lambda o, e: None, on_score=again)
    await restarted.start()
    await feed(restarted, healthy_pump, int(4.5 * HOUR), int(4.5 * HOUR) + 600)
    assert restarted.stats("pump-1").model_version == seen[-1], "the newest model is loaded at start"
    assert restarted.stats("pump-1").training_windows == 0
    await restarted.close()
    assert set(again.versions) == {seen[-1]}

    assert run("model", "versions", "--data-dir", str(tmp_path), "--machine", "pump-1") == 0
    listed = capsys.readouterr().out.splitlines()
    assert [line.split()[0] for line in listed[:2]] == [seen[-1], seen[-2]]
    assert "current" in listed[0]
    assert "model_version" in listed[-1], "it says how to pin one"
    assert run("model", "versions", "--data-dir", str(tmp_path), "--machine", "press-9") == 2


async def test_a_pinned_version_is_used_and_never_retrained(
    tmp_path: Path, healthy_pump: Dataset, caplog: pytest.LogCaptureFixture
) -> None:
    sink = AlertSink(config(tmp_path), lambda o, e: None)
    await sink.start()
    await feed(sink, healthy_pump, 0, int(2.5 * HOUR))
    await sink.close()
    kept = stored_models(tmp_path / "pump-1")
    assert len(kept) == 2
    older = kept[1].version

    scores = Scores()
    pinned = AlertSink(config(tmp_path, machines={"pump-1": {"model_version": older[:6]}}), lambda o, e: None, scores)
    await pinned.start()
    await feed(pinned, healthy_pump, int(2.5 * HOUR), int(4.5 * HOUR))
    stats = pinned.stats("pump-1")
    await pinned.close()
    assert (stats.model_version, stats.pinned, stats.retrains) == (older, True, 0)
    assert set(scores.versions) == {older}
    assert [s.version for s in stored_models(tmp_path / "pump-1")] == [k.version for k in kept], "files untouched"

    caplog.set_level(logging.ERROR, logger="edge_agent.alerts.sink")
    unknown = AlertSink(config(tmp_path, machines={"pump-1": {"model_version": "deadbeef"}}), lambda o, e: None)
    await unknown.start()
    await feed(unknown, healthy_pump, int(4.5 * HOUR), int(4.5 * HOUR) + 300)
    assert unknown.stats("pump-1").model_version == kept[0].version, "an unknown pin falls back to the newest"
    await unknown.close()
    assert "no model version 'deadbeef'" in caplog.text
    assert kept[1].version in caplog.text, "the error lists the versions there are"


async def test_retraining_is_off_by_default(tmp_path: Path, healthy_pump: Dataset) -> None:
    sink = AlertSink(config(tmp_path, retrain_every=None), lambda o, e: None)
    await sink.start()
    await feed(sink, healthy_pump, 0, int(2.5 * HOUR))
    stats = sink.stats("pump-1")
    await sink.close()
    assert stats.learned
    assert stats.retrains == 0
    assert not (tmp_path / "pump-1" / VERSIONS_DIR).exists()


async def test_a_developing_fault_is_not_learned_as_normal(tmp_path: Path) -> None:
    """Bearing wear from 4 h: hourly retrains before it, none while its alert is open, which stays open."""
    wearing = record("pump", 31, "6h", [{"fault": "bearing_wear", "at": "4h", "duration": "2h", "severity": 0.9}])
    events: list[tuple[str, int]] = []
    sink = AlertSink(config(tmp_path), lambda o, e: events.append((e["event"], sink.stats("pump-1").retrains)))
    await sink.start()
    await feed(sink, wearing, 0, len(wearing.time_s))
    stats = sink.stats("pump-1")
    await sink.close()
    kinds = [kind for kind, _ in events]
    assert "raised" in kinds, events
    assert "cleared" not in kinds, "the wear was not learned away while it went on"
    retrains_at_raise = next(count for kind, count in events if kind == "raised")
    assert retrains_at_raise >= 2, "hourly retrains on the healthy hours before the fault"
    assert stats.retrains == retrains_at_raise, "no retrain while the alert is open"


@pytest.mark.parametrize(
    ("section", "says"),
    [
        ({"retrain_on": "5m"}, "retrain_on 300s gives 10 windows of 60s every 30s; a retrain needs at least 34"),
        ({"retrain_every": "0s"}, "retrain_every"),
        ({"keep_models": 0}, "keep_models"),
        ({"machines": {"pump-1": {"model_version": "v1.2"}}}, "model_version"),
    ],
)
def test_bad_retrain_settings_are_refused_with_the_key(section: dict[str, Any], says: str) -> None:
    with pytest.raises(ValidationError, match=re.escape(says)):
        AlertsConfig.model_validate(section)
