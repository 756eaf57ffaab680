"""The one rule for "enough windows to learn": the trainer's split, the minimum, the progress.

``models.model`` holds it; the trainer, the config check, the alert engine, the status page and
``model train`` all use it. These tests pin the rule itself on the trainer's own split.
"""

from __future__ import annotations

import numpy as np
import pytest

from edge_agent.core.errors import ModelError
from models.features import WindowSet
from models.model import (
    MIN_FIT_WINDOWS,
    MIN_WINDOWS,
    MachineModel,
    held_out,
    learning_progress,
    min_windows_to_learn,
    windows_in,
)
from models.thresholds import MIN_SCORES
from simulators.dataset import Dataset
from tests.helpers.datasets import SPEC


def test_from_the_minimum_on_every_count_leaves_enough_to_fit_and_to_calibrate() -> None:
    assert MIN_WINDOWS == min_windows_to_learn() == 34
    for n in range(MIN_WINDOWS, 5000):
        held = held_out(n)
        assert int(held.sum()) >= MIN_SCORES, n
        assert int((~held).sum()) >= MIN_FIT_WINDOWS, n
    # One fewer is not enough: 33 windows hold out only 9 (and 30, the old minimum, 9 too).
    assert int(held_out(MIN_WINDOWS - 1).sum()) < MIN_SCORES
    assert int(held_out(30).sum()) == 9
    # The split's rounding is uneven: 32 would work, but 33 does not, so 32 is no minimum.
    assert int(held_out(32).sum()) == MIN_SCORES


def test_the_split_holds_out_every_third_of_nine_chronological_chunks() -> None:
    held = held_out(90)
    assert held.sum() == 30
    assert list(np.flatnonzero(held[:30])) == list(range(20, 30))  # chunks 0, 1 fit; chunk 2 held


def _first_running(windows: WindowSet, count: int) -> WindowSet:
    index = [i for i, s in enumerate(windows.state) if s == "running"][:count]
    return WindowSet(
        windows.features[index], windows.start_s[index], windows.end_s[index], [windows.state[i] for i in index], 0
    )


def test_the_trainer_learns_from_the_minimum_and_not_from_one_fewer(
    healthy_pump: Dataset, pump_windows: WindowSet
) -> None:
    model = MachineModel.train(_first_running(pump_windows, MIN_WINDOWS), healthy_pump.signals, SPEC)
    assert model.states["running"].n_windows == MIN_WINDOWS
    assert model.states["running"].threshold.n_scores >= MIN_SCORES
    with pytest.raises(ModelError, match=f"need {MIN_WINDOWS} windows in one of the state"):
        MachineModel.train(_first_running(pump_windows, MIN_WINDOWS - 1), healthy_pump.signals, SPEC)


def test_windows_in_is_learn_after_over_hop_rounded_up() -> None:
    assert windows_in(150, 5) == 30
    assert windows_in(170, 5) == 34
    assert windows_in(14400, 5) == 2880
    assert windows_in(151, 5) == 31
    assert windows_in(0.3 * 3, 0.3) == 3  # no extra window for a rounding error


def test_learning_progress_counts_per_learned_state() -> None:
    assert learning_progress({}, ["running"], 40) == (0, 40)
    assert learning_progress({"running": 27, "idle": 9}, ["running"], 40) == (27, 40)
    # Enough windows in all, too few in any one state: the windows needed grow.
    assert learning_progress({"running": 25, "idle": 15}, ["running", "idle"], 40) == (40, 49)
    assert learning_progress({"running": 34, "idle": 15}, ["running", "idle"], 40) == (49, 49)
    # A plan below the minimum still needs the minimum (the config check refuses such a plan).
    assert learning_progress({"running": 20}, ["running"], 30) == (20, MIN_WINDOWS)
