"""Contract every registered detector meets, plus the safe model file format."""

from __future__ import annotations

import json
import zipfile
from pathlib import Path

import numpy as np
import pytest

from edge_agent.core.errors import ModelError
from models import store
from models.detectors import DETECTORS
from models.detectors.forest import IsolationForestDetector
from models.features import WindowSet
from models.levels import LevelModel
from models.model import MIN_WINDOWS, MachineModel
from simulators.dataset import Dataset
from tests.helpers.datasets import SPEC, fault_windows


def running(ws: WindowSet, levels: LevelModel | None = None) -> np.ndarray:
    """Detector vectors (window statistics plus level residuals) of the running windows."""
    features: np.ndarray = ws.features[np.array(ws.state) == "running"]
    levels = levels or LevelModel.fit(features, len(features[0]) // 9, span_s=float(ws.end_s[-1] - ws.start_s[0]))
    vectors: np.ndarray = levels.transform(features)
    return vectors


@pytest.mark.parametrize("name", sorted(DETECTORS))
def test_contract(name: str, healthy_pump: Dataset, pump_windows: WindowSet, faulty_pump: Dataset) -> None:
    """Deterministic with a seed, contributions per signal, and better than chance on labelled data."""
    levels = LevelModel.fit(pump_windows.features[np.array(pump_windows.state) == "running"], 5, 12 * 3600.0)
    x = running(pump_windows, levels)
    a = DETECTORS[name](healthy_pump.signals, seed=3)
    b = DETECTORS[name](healthy_pump.signals, seed=3)
    a.fit(x)
    b.fit(x)
    ws, labels = fault_windows(faulty_pump)
    keep = np.array(ws.state) == "running"
    faulty = running(ws, levels)
    scores = np.array([a.score(row).value for row in faulty])
    assert np.array_equal(scores, [b.score(row).value for row in faulty])
    s = a.score(faulty[0])
    assert set(s.contributions) == set(healthy_pump.signals)
    assert all(v >= 0 for v in s.contributions.values())
    y = labels[keep]
    # AUC: a faulty window outscores a healthy one far more often than chance.
    pos, neg = scores[y], scores[~y]
    auc = (pos[:, None] > neg[None, :]).mean()
    assert auc > 0.75, f"{name}: AUC {auc:.2f}"


@pytest.mark.parametrize("name", sorted(DETECTORS))
def test_state_round_trip_scores_identically(name: str, healthy_pump: Dataset, pump_windows: WindowSet) -> None:
    x = running(pump_windows)
    det = DETECTORS[name](healthy_pump.signals, seed=1)
    det.fit(x)
    arrays, params = det.to_state()
    assert all(a.dtype.kind in "biuf" for a in arrays.values())
    json.dumps(params)
    again = DETECTORS[name].from_state(healthy_pump.signals, arrays, params)
    for row in x[:20]:
        assert again.score(row) == det.score(row)


def test_forest_numpy_scoring_matches_scikit_learn(healthy_pump: Dataset, pump_windows: WindowSet) -> None:
    """The exported trees give the numbers scikit-learn gives (scoring needs no scikit-learn)."""
    from sklearn.ensemble import IsolationForest

    x = running(pump_windows)
    det = IsolationForestDetector(healthy_pump.signals, seed=7, n_trees=50)
    det.fit(x)  # sklearn is imported here, so the fit runs in this process
    assert det.scaler is not None
    z = det.scaler.z(x)
    reference = IsolationForest(n_estimators=50, max_samples=256, random_state=7).fit(z)
    ours = 2.0 ** (-det.path_lengths(z[:200]) / det.trees["norm"][0])
    assert np.allclose(ours, -reference.score_samples(z[:200]), atol=1e-9)
    assert det.score(x[0]).value == pytest.approx(det.trees["norm"][0] / det.path_lengths(z[:1])[0])


def test_model_file_round_trip(tmp_path: Path, pump_model: MachineModel, pump_windows: WindowSet) -> None:
    path = tmp_path / "pump.npz"
    version = pump_model.save(path)
    loaded = MachineModel.load(path)
    assert loaded.version == version
    assert loaded.signals == pump_model.signals
    window = next(w for w in _windows(pump_windows) if w.state == "running")
    a, b = pump_model.assess(window), loaded.assess(window)
    assert a is not None
    assert b is not None
    assert a.score == b.score


def _windows(ws: WindowSet):  # type: ignore[no-untyped-def]
    from models.features import Window

    for i in range(len(ws.end_s)):
        yield Window(ws.start_s[i], ws.end_s[i], ws.features[i], 60, ws.state[i])


def _rewrite(path: Path, change: str) -> None:
    """Edit a model file the way an attacker or a bad copy would."""
    with np.load(path, allow_pickle=False) as npz:
        arrays = {k: npz[k] for k in npz.files}
    header = json.loads(arrays["__header__"].tobytes())
    if change == "array":
        key = next(k for k in arrays if k.endswith("scaler/scale"))
        arrays[key] = arrays[key] * 2
    elif change == "version":
        header["version"] = 99
        header["checksum"] = store.checksum(header, {k: v for k, v in arrays.items() if k != "__header__"})
    arrays["__header__"] = np.frombuffer(json.dumps(header).encode(), dtype=np.uint8)
    np.savez(path, **arrays)


@pytest.mark.parametrize(("change", "message"), [("array", "checksum mismatch"), ("version", "format version 99")])
def test_tampered_or_other_version_files_are_refused(
    tmp_path: Path, pump_model: MachineModel, change: str, message: str
) -> None:
    path = tmp_path / "m.npz"
    pump_model.save(path)
    _rewrite(path, change)
    with pytest.raises(ModelError, match=message):
        MachineModel.load(path)


def test_pickled_or_garbage_files_are_refused(tmp_path: Path) -> None:
    path = tmp_path / "evil.npz"
    np.savez(path, __header__=np.frombuffer(b"{}", dtype=np.uint8), payload=np.array([object()], dtype=object))
    with pytest.raises(ModelError, match=str(path)):
        MachineModel.load(path)
    path.write_bytes(b"not a zip")
    with pytest.raises(ModelError, match="not a readable model file"):
        MachineModel.load(path)
    with zipfile.ZipFile(path, "w") as z:
        z.writestr("x.npy", b"junk")
    with pytest.raises(ModelError):
        MachineModel.load(path)


def test_too_little_data_says_how_much_is_needed(healthy_pump: Dataset, pump_windows: WindowSet) -> None:
    small = WindowSet(
        pump_windows.features[:10], pump_windows.start_s[:10], pump_windows.end_s[:10], pump_windows.state[:10], 0
    )
    with pytest.raises(ModelError, match=f"need {MIN_WINDOWS} windows"):
        MachineModel.train(small, healthy_pump.signals, SPEC)
