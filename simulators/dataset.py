"""A scenario as numpy arrays with labels, for training and scoring detectors without a CSV.

``dataset(scenario, "7d")`` gives the same samples and ground truth as ``edge-sim record``
(both step the plant through ``sampling``), so a model evaluated here and a model evaluated
on the CSV see identical data.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from simulators.durations import parse_duration
from simulators.errors import SimulatorError
from simulators.faults import Fault
from simulators.sampling import label, sample_count, samples
from simulators.scenario import Scenario


@dataclass(frozen=True, slots=True)
class Dataset:
    """Samples of one machine: ``values[i, j]`` is signal ``signals[j]`` at ``time_s[i]``."""

    machine_id: str
    signals: list[str]
    units: list[str]
    time_s: npt.NDArray[np.float64]
    values: npt.NDArray[np.float64]
    state: npt.NDArray[np.int8]
    anomaly: npt.NDArray[np.bool_]
    intensity: npt.NDArray[np.float64]
    fault: list[str]


def dataset(
    scenario: Scenario,
    duration: float | str,
    machine_id: str | None = None,
    step: float | str | None = None,
) -> Dataset:
    """Step a fresh plant of ``scenario`` and collect one machine's samples and labels.

    ``machine_id`` may be left out when the scenario has one machine. ``anomaly[i]`` is True while
    a fault is present on that machine; ``fault[i]`` names them (``name`` or ``name:signal``,
    joined by ``+``); ``intensity[i]`` is the strongest one's severity times progression.
    """
    try:
        duration_s = parse_duration(duration)
        step_s = None if step is None else parse_duration(step)
    except ValueError as exc:
        raise SimulatorError(str(exc)) from None
    rows, step_value = sample_count(scenario, duration_s, step_s)
    plant = scenario.build_plant()
    if machine_id is None:
        if len(plant.machines) != 1:
            raise SimulatorError(f"this scenario has machines {plant.machine_ids}. Fix: pass machine_id=")
        machine_id = plant.machine_ids[0]
    model = plant.machine(machine_id)
    specs = model.signal_specs
    time_s = np.empty(rows)
    values = np.empty((rows, len(specs)))
    state = np.empty(rows, dtype=np.int8)
    anomaly = np.zeros(rows, dtype=np.bool_)
    intensity = np.zeros(rows)
    faults: list[str] = []
    for sample in samples(plant, rows, step_value):
        i = sample.index - 1
        reading = sample.readings[machine_id]
        present: list[Fault] = sample.present[machine_id]
        time_s[i] = sample.time_s
        values[i] = list(reading.values.values())
        state[i] = int(reading.state)
        anomaly[i] = bool(present)
        intensity[i] = max((f.intensity(sample.time_s) for f in present), default=0.0)
        faults.append("+".join(label(f) for f in present))
    return Dataset(
        machine_id, [s.name for s in specs], [s.unit for s in specs], time_s, values, state, anomaly, intensity, faults
    )
