"""Feeding the alert engine (AlertSink) simulator rows the way a poller would, and its configs.

Batches are built from the simulators' plant (simulated time, 1 s steps), shaped as a poll of the
simulators' registers would give them: every signal, ``state_code`` and ``parts_count``.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from edge_agent.alerts.config import AlertsConfig
from edge_agent.alerts.sink import AlertSink
from edge_agent.core.origin import Origin
from edge_agent.core.samples import Batch, Sample
from models.features import Window
from simulators.dataset import Dataset
from tests.helpers.waiting import wait_until

ORIGIN = Origin("site", "hall", "line-1", "pump-1")
T0 = 1_767_225_600.0  # 2026-01-01T00:00:00Z, the simulated start
HOUR = 3600
STATE = {"signal": "state_code", "codes": {"0": "off", "1": "idle", "2": "running", "3": "setup"}}
WIDTH = 432  # 48 signals x 9 features, as a machine of the footprint bench


def sink_config(tmp_path: Path, **extra: Any) -> AlertsConfig:
    """Learn the normal from three simulated hours, no retraining."""
    return AlertsConfig.model_validate({"learn_after": "3h", "data_dir": str(tmp_path), "state": STATE, **extra})


def retrain_config(tmp_path: Path, **extra: Any) -> AlertsConfig:
    """Learn after one simulated hour, retrain every hour, keep two model versions."""
    return AlertsConfig.model_validate(
        {
            "learn_after": "1h",
            "retrain_every": "1h",
            "keep_models": 2,
            "data_dir": str(tmp_path),
            "state": STATE,
            **extra,
        }
    )


def batch(d: Dataset, i: int) -> Batch:
    """Row ``i`` of the recording as one poll of pump-1 (plus a tag the device refuses)."""
    ns = int((T0 + d.time_s[i]) * 1e9)
    samples = [Sample(s, float(v), ns) for s, v in zip(d.signals, d.values[i], strict=True)]
    samples += [Sample("state_code", int(d.state[i]), ns), Sample("parts_count", i, ns)]
    samples.append(Sample.bad("flow_setpoint", "Modbus exception 2", ns))
    return Batch("pump-1", tuple(samples), ns)


async def feed(sink: AlertSink, d: Dataset, start: int, stop: int) -> None:
    """Submit rows like a poller would, letting the sink catch up every few thousand rows."""
    for i in range(start, stop):
        await sink.submit(batch(d, i), ORIGIN)
        if i % 2000 == 1999:
            await wait_until(lambda: sink.idle("pump-1"), 30, "the sink to process its queue")
    await wait_until(lambda: sink.idle("pump-1"), 30, "the sink to process its queue")


def feature_windows(count: int, seed: int = 7) -> list[Window]:
    """``count`` random windows of ``WIDTH`` features, alternating running and idle."""
    rng = np.random.default_rng(seed)
    states = ["running", "idle"]
    return [
        Window(1000.0 + 30 * i, 1060.0 + 30 * i, rng.normal(size=WIDTH), 60 - i % 3, states[i % 2])
        for i in range(count)
    ]


def same(a: list[Window], b: list[Window]) -> bool:
    """Whether two lists hold the same windows, features compared exactly."""
    return len(a) == len(b) and all(
        x.start_s == y.start_s
        and x.end_s == y.end_s
        and x.n_samples == y.n_samples
        and x.state == y.state
        and np.array_equal(x.features, y.features)
        for x, y in zip(a, b, strict=True)
    )
