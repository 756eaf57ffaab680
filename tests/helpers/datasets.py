"""Labelled simulator data for the model and alert tests (simulated time, recorded in memory).

The recordings are cached per process: several test folders ask for the same healthy pump, and
recording twelve simulated hours once is enough.
"""

from __future__ import annotations

import functools
import json
from typing import Any

import numpy as np

from models.features import WindowSet, WindowSpec, windows_from_arrays
from models.operating_state import SIMULATOR_CODES
from simulators.dataset import Dataset, dataset
from simulators.scenario import parse_scenario

SPEC = WindowSpec(60.0, 30.0)


def record(kind: str, seed: int, duration: str, faults: list[dict[str, Any]], step: str = "1s") -> Dataset:
    """One simulated machine of ``kind`` with scheduled faults, as labelled arrays."""
    lines = [f"seed: {seed}", f"step: {step}", f"machines: [{kind}-1]", "faults:" if faults else "faults: []"]
    lines += [f"  - {json.dumps({'machine': f'{kind}-1', **f})}" for f in faults]
    return dataset(parse_scenario("\n".join(lines)), duration)


@functools.cache
def healthy_pump() -> Dataset:
    """Twelve healthy hours of a pump (seed 21)."""
    return record("pump", 21, "12h", [])


@functools.cache
def faulty_pump() -> Dataset:
    """Six hours of another pump (seed 22): bearing wear from 2 h to 4 h."""
    return record("pump", 22, "6h", [{"fault": "bearing_wear", "at": "2h", "duration": "2h", "severity": 0.9}])


def states(d: Dataset) -> list[str]:
    """The simulators' state codes as names."""
    return [SIMULATOR_CODES[str(int(s))] for s in d.state]


def windows(d: Dataset, spec: WindowSpec = SPEC) -> WindowSet:
    """The dataset cut into feature windows with their operating state."""
    return windows_from_arrays(d.time_s, d.values, spec, states(d))


def fault_windows(d: Dataset, spec: WindowSpec = SPEC) -> tuple[WindowSet, np.ndarray]:
    """Windows and, per window, whether a fault was present at its end."""
    ws = windows(d, spec)
    index = np.searchsorted(d.time_s, ws.end_s) - 1
    return ws, d.anomaly[np.clip(index, 0, len(d.anomaly) - 1)]
