"""Labelled simulator data for the alert engine's tests (simulated time)."""

from __future__ import annotations

import pytest

from simulators.dataset import Dataset
from tests.helpers import datasets


@pytest.fixture(scope="session")
def healthy_pump() -> Dataset:
    """Twelve healthy hours of a pump (seed 21), the same recording the model tests use."""
    return datasets.healthy_pump()
