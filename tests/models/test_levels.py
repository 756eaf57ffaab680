"""Level residuals: a temperature that no longer fits the load stands out, in that signal only."""

from __future__ import annotations

import numpy as np
import pytest

from edge_agent.core.errors import ModelError
from models.features import WindowSpec, windows_from_arrays
from models.levels import MIN_SPAN_S, MODEL_FEATURES, LevelModel

HOURS = 14
LEVEL, TREND = MODEL_FEATURES.index("level"), MODEL_FEATURES.index("trend")


def machine(seed: int, offset_from_s: float | None = None) -> tuple[np.ndarray, np.ndarray]:
    """A current wandering with the load and a temperature following it through a 15 min lag.

    The hall temperature swings +-1 K, which no signal measures: what limits any thermal model.

    From ``offset_from_s`` on, the temperature reading creeps 8 K up over 30 min (a sensor drift).
    """
    rng = np.random.default_rng(seed)
    t = np.arange(0, HOURS * 3600.0)
    load = np.empty(len(t))
    load[0] = 0.6
    for i in range(1, len(t)):  # Ornstein-Uhlenbeck, 5 min time constant
        load[i] = 0.6 + (load[i - 1] - 0.6) * np.exp(-1 / 300) + rng.normal(0, 0.15 * np.sqrt(1 - np.exp(-2 / 300)))
    current = 10 + 8 * load
    temp = np.empty(len(t))
    temp[0] = 40 + 30 * load[0] ** 2
    for i in range(1, len(t)):
        temp[i] = temp[i - 1] + (40 + 30 * load[i] ** 2 - temp[i - 1]) * (1 - np.exp(-1 / 900))
    temp += np.sin(2 * np.pi * t / (8 * 3600)) + rng.normal(0, 0.05, len(t))  # the hall: +-1 K
    if offset_from_s is not None:
        temp += 8.0 * np.clip((t - offset_from_s) / 1800, 0, 1)
    return t, np.c_[current + rng.normal(0, 0.1, len(t)), temp]


def z_of(levels: LevelModel, train: np.ndarray, x: np.ndarray) -> np.ndarray:
    """Level and trend residuals of ``x`` in robust sigmas of the training residuals, per signal."""
    ref = levels.transform(train).reshape(len(train), 2, len(MODEL_FEATURES))[:, :, [LEVEL, TREND]]
    med = np.median(ref, axis=0)
    mad = 1.4826 * np.median(np.abs(ref - med), axis=0) + 1e-12
    out = levels.transform(x).reshape(len(x), 2, len(MODEL_FEATURES))[:, :, [LEVEL, TREND]]
    z: np.ndarray = (out - med) / mad
    return z


@pytest.fixture(scope="module")
def trained() -> tuple[LevelModel, np.ndarray]:
    t, values = machine(4)
    ws = windows_from_arrays(t, values, WindowSpec(60, 30))
    warm = np.isfinite(ws.features).all(axis=1)
    return LevelModel.fit(ws.features, 2, span_s=float(ws.end_s[-1] - ws.start_s[0])), ws.features[warm]


def test_a_drifting_temperature_shows_in_its_own_level_and_trend_only(trained: tuple[LevelModel, np.ndarray]) -> None:
    levels, train = trained
    assert list(levels.slow) == [0.0, 1.0]  # the current is fast (a cause), the temperature slow
    t, values = machine(5, offset_from_s=8 * 3600)
    ws = windows_from_arrays(t, values, WindowSpec(60, 30))
    z = z_of(levels, train, ws.features)
    before = (ws.end_s > 3600) & (ws.end_s < 8 * 3600)
    creeping = (ws.end_s > 8 * 3600 + 900) & (ws.end_s < 8 * 3600 + 1800)
    settled = ws.end_s > 9 * 3600
    healthy = np.quantile(np.abs(z[before, 1, 0]), 0.99)  # the hall's swing, unexplained
    assert np.median(z[creeping, 1, 0]) > 1.5 * healthy  # already hotter than the load explains
    assert np.median(z[settled, 1, 0]) > 2 * healthy
    assert np.median(z[creeping, 1, 1]) > np.median(np.abs(z[before, 1, 1]))  # and climbing
    assert np.all(z[:, 0] == 0)  # the current gets no residual: nothing blamed on it


def test_unwarmed_windows_get_zero_residuals_and_short_training_learns_none() -> None:
    t, values = machine(6)
    ws = windows_from_arrays(t[: 4 * 3600], values[: 4 * 3600], WindowSpec(60, 30))
    short = LevelModel.fit(ws.features, 2, span_s=4 * 3600.0)
    assert MIN_SPAN_S > 4 * 3600
    assert not short.slow.any()
    out = short.transform(ws.features).reshape(len(ws.features), 2, len(MODEL_FEATURES))
    assert np.all(out[:, :, [LEVEL, TREND]] == 0)
    assert np.all(np.isfinite(out))  # warming-up windows (NaN slow means) included


def test_arrays_round_trip_and_damage_is_refused(trained: tuple[LevelModel, np.ndarray]) -> None:
    levels, train = trained
    again = LevelModel.from_arrays(levels.to_arrays(), 2)
    assert np.array_equal(again.transform(train), levels.transform(train))
    with pytest.raises(ModelError, match="missing array 'coef'"):
        LevelModel.from_arrays({k: v for k, v in levels.to_arrays().items() if k != "coef"}, 2)
    with pytest.raises(ModelError, match="do not fit the signals"):
        LevelModel.from_arrays(levels.to_arrays(), 3)
    with pytest.raises(ModelError, match="retrain after changing signals"):
        levels.transform(train[:, :-1])
