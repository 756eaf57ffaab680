"""Stepping a scenario's plant flat out, sample by sample, with the ground truth of each sample.

Shared by ``record`` (CSV) and ``dataset`` (numpy arrays) so both see identical samples and
labels for the same scenario.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

from simulators.errors import SimulatorError
from simulators.faults import Fault
from simulators.plant import Plant, Reading
from simulators.scenario import Scenario

MAX_ROWS = 50_000_000


@dataclass(frozen=True, slots=True)
class Sample:
    """One sample time: the readings of every machine and the faults present per machine."""

    index: int
    time_s: float
    readings: dict[str, Reading]
    present: dict[str, list[Fault]]


def sample_count(scenario: Scenario, duration_s: float, step_s: float | None) -> tuple[int, float]:
    """(number of samples, step) after checking both; raises ``SimulatorError`` with the fix."""
    step = scenario.step_s if step_s is None else step_s
    if not step > 0:
        raise SimulatorError(f"step must be positive, got {step!r}. Fix: e.g. --step 1s")
    if not duration_s > 0:
        raise SimulatorError(f"duration must be positive, got {duration_s!r}. Fix: e.g. --duration 7d")
    rows = round(duration_s / step)
    if rows > MAX_ROWS:
        raise SimulatorError(f"{rows} rows is too many (limit {MAX_ROWS}). Fix: a shorter duration or a longer step")
    return rows, step


def samples(plant: Plant, rows: int, step: float) -> Iterator[Sample]:
    """Step ``plant`` ``rows`` times by ``step`` seconds, yielding each sample with its labels."""
    for k in range(1, rows + 1):
        readings = plant.step(step)
        t = plant.time_s
        yield Sample(k, t, readings, {mid: plant.faults.present(mid, t) for mid in readings})


def label(fault: Fault, machine_prefix: bool = False) -> str:
    """A fault's label in recordings: ``name`` or ``name:signal``, optionally ``machine:`` first."""
    text = f"{fault.fault}:{fault.signal}" if fault.signal else fault.fault
    return f"{fault.machine_id}:{text}" if machine_prefix else text
