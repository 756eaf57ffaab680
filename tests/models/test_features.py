"""Feature windows: the numbers are right, gaps are skipped and counted, streaming equals batch."""

from __future__ import annotations

import numpy as np
import pytest

from edge_agent.core.errors import ModelError
from models.features import (
    CONTEXT,
    FEATURES,
    STATS,
    WARMUP_S,
    Windower,
    WindowSpec,
    feature_names,
    signal_features,
    windows_from_arrays,
)


def test_signal_features_of_a_sine_and_a_ramp() -> None:
    t = np.arange(0, 100, 0.01)
    f = dict(zip(FEATURES, signal_features(t, np.sin(2 * np.pi * t)), strict=False))
    assert f["mean"] == pytest.approx(0, abs=1e-9)
    assert f["rms"] == pytest.approx(2**-0.5, rel=1e-3)
    assert f["std"] == pytest.approx(2**-0.5, rel=1e-3)
    assert f["p2p"] == pytest.approx(2, rel=1e-3)
    assert f["crest"] == pytest.approx(2**0.5, rel=1e-3)
    assert f["kurtosis"] == pytest.approx(1.5, rel=1e-2)  # a sine's Pearson kurtosis
    ramp = dict(zip(FEATURES, signal_features(t, 3.0 * t + 1), strict=False))
    assert ramp["slope"] == pytest.approx(3.0)


def test_a_flat_signal_has_defined_features() -> None:
    f = dict(zip(FEATURES, signal_features(np.arange(10.0), np.full(10, 4.0)), strict=False))
    assert f["std"] == 0
    assert f["kurtosis"] == 0
    assert f["crest"] == 1
    assert f["slope"] == 0


def test_windows_hop_and_overlap() -> None:
    t = np.arange(0, 600.0)
    ws = windows_from_arrays(t, np.c_[np.sin(t), np.cos(t)], WindowSpec(60, 30))
    assert ws.features.shape[1] == 2 * len(FEATURES) == len(feature_names(["a", "b"]))
    assert np.allclose(np.diff(ws.end_s), 30)
    assert np.allclose(ws.end_s - ws.start_s, 60)
    assert ws.skipped == 0


def test_a_gap_skips_windows_and_counts_them() -> None:
    t = np.concatenate([np.arange(0, 300.0), np.arange(400, 700.0)])  # 100 s without data
    ws = windows_from_arrays(t, np.c_[np.sin(t)], WindowSpec(60, 30))
    assert ws.skipped >= 3
    for start, end in zip(ws.start_s, ws.end_s, strict=True):
        assert end <= 312 or start >= 388  # at most 20 % of a window may be missing


def test_a_signal_without_readings_skips_the_window() -> None:
    t = np.arange(0, 200.0)
    x = np.c_[np.sin(t), np.cos(t)]
    x[70:150, 1] = np.nan  # second tag bad for 80 s
    ws = windows_from_arrays(t, x, WindowSpec(60, 30))
    assert ws.skipped >= 2
    stats = ws.features.reshape(len(ws.features), 2, len(FEATURES))[:, :, : len(STATS)]
    assert np.all(np.isfinite(stats))


def test_state_changes_make_mixed_windows() -> None:
    t = np.arange(0, 300.0)
    states = ["running"] * 150 + ["idle"] * 150
    ws = windows_from_arrays(t, np.c_[np.sin(t)], WindowSpec(60, 30), states)
    assert "mixed" in ws.state
    assert ws.state[0] == "running"
    assert ws.state[-1] == "idle"


def test_streaming_drops_rows_that_go_back_in_time_and_resets() -> None:
    w = Windower(WindowSpec(10, 5), 1)
    for i in range(30):
        w.push(float(i), np.array([float(i % 3)]), "running")
    w.push(5.0, np.array([1.0]), "running")
    assert w.out_of_order == 1
    w.reset()
    assert w.push(100.0, np.array([1.0]), "running") == []


def test_bad_specs_are_refused() -> None:
    with pytest.raises(ModelError, match="positive"):
        WindowSpec(0, 1)
    with pytest.raises(ModelError, match="min_fill"):
        WindowSpec(60, 30, min_fill=0)


def test_slow_means_warm_up_then_lag_a_ramp_by_their_time_constant() -> None:
    t = np.arange(0, 3 * 3600.0)
    ws = windows_from_arrays(t, np.c_[0.01 * t], WindowSpec(60, 30))
    blocks = ws.features.reshape(len(ws.features), len(FEATURES))
    ctx = blocks[:, [FEATURES.index(c) for c in CONTEXT]]
    warming = ws.end_s < WARMUP_S
    assert np.isnan(ctx[warming]).all()  # a fresh slow mean is just the first reading: unknown
    assert np.isfinite(ctx[~warming]).all()
    last = blocks[-1]
    # A first-order lag trails a ramp by slope x tau once settled: 6 for 10 min, 18 for 30 min (still settling).
    assert last[FEATURES.index("mean")] - last[FEATURES.index(CONTEXT[0])] == pytest.approx(6.0, rel=0.05)
    assert 10 < last[FEATURES.index("mean")] - last[FEATURES.index(CONTEXT[1])] < 18


def test_a_long_gap_restarts_the_slow_means() -> None:
    t = np.concatenate([np.arange(0, 3600.0), np.arange(7200, 7200 + 3600.0)])
    ws = windows_from_arrays(t, np.c_[np.sin(t / 600)], WindowSpec(60, 30))
    ctx = ws.features[:, FEATURES.index(CONTEXT[0])]
    after = ws.end_s > 7200
    assert np.isnan(ctx[after & (ws.end_s < 7200 + WARMUP_S)]).all()
    assert np.isfinite(ctx[after & (ws.end_s > 7200 + WARMUP_S + 60)]).all()
