"""Labelled simulator data shared by the model tests (recorded once per session, simulated time)."""

from __future__ import annotations

import pytest

from models.features import WindowSet
from models.model import MachineModel
from simulators.dataset import Dataset
from tests.helpers import datasets
from tests.helpers.datasets import SPEC


@pytest.fixture(scope="session")
def healthy_pump() -> Dataset:
    """Twelve healthy hours of a pump (seed 21)."""
    return datasets.healthy_pump()


@pytest.fixture(scope="session")
def faulty_pump() -> Dataset:
    """Six hours of another pump (seed 22): bearing wear from 2 h to 4 h."""
    return datasets.faulty_pump()


@pytest.fixture(scope="session")
def pump_windows(healthy_pump: Dataset) -> WindowSet:
    """The healthy pump's windows."""
    return datasets.windows(healthy_pump)


@pytest.fixture(scope="session")
def pump_model(healthy_pump: Dataset, pump_windows: WindowSet) -> MachineModel:
    """A PCA model of the healthy pump."""
    return MachineModel.train(pump_windows, healthy_pump.signals, SPEC, detector="pca")
