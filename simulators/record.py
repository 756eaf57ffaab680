"""``edge-sim record``: run a scenario flat out, without servers, into a labelled CSV.

One row per sample time, one column per signal, plus the ground truth: ``anomaly`` (1 while
any fault is present), ``fault`` (present faults, ``name`` or ``name:signal`` for sensor
faults, joined by ``+``) and ``fault_intensity`` (the strongest present fault's severity times
progression, 0-1). With more than one machine every per-machine column is prefixed
``<machine>.``; ``anomaly``/``fault`` then cover the whole plant.

The file is written to ``<out>.part`` and renamed when complete, so a crash or Ctrl+C never
leaves a half file that looks whole.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path
from typing import TextIO

from simulators.faults import Fault
from simulators.plant import Plant
from simulators.sampling import label, sample_count, samples
from simulators.scenario import Scenario


@dataclass(frozen=True, slots=True)
class RecordSummary:
    """What a recording wrote."""

    rows: int
    anomalous_rows: int
    columns: list[str]


def columns_for(plant: Plant) -> list[str]:
    """The CSV header for a plant."""
    prefix = len(plant.machines) > 1
    header = ["timestamp", "time_s"]
    for mid, model in plant.machines.items():
        p = f"{mid}." if prefix else ""
        header += [f"{p}{name}" for name in model.signal_names()]
        header += [f"{p}state", f"{p}parts_count"]
        if prefix:
            header += [f"{p}anomaly", f"{p}fault"]
    return [*header, "anomaly", "fault", "fault_intensity"]


def write_csv(
    scenario: Scenario,
    duration_s: float,
    out: TextIO,
    step_s: float | None = None,
    progress: Callable[[float], None] | None = None,
) -> RecordSummary:
    """Step a fresh plant of ``scenario`` for ``duration_s`` simulated seconds, writing rows to ``out``."""
    rows, step = sample_count(scenario, duration_s, step_s)
    plant = scenario.build_plant()
    header = columns_for(plant)
    out.write(",".join(header) + "\n")
    multi = len(plant.machines) > 1
    anomalous = 0
    for sample in samples(plant, rows, step):
        t = sample.time_s
        stamp = (scenario.start + timedelta(seconds=sample.index * step)).isoformat(timespec="milliseconds")
        cells = [stamp, f"{t:.3f}"]
        present_all: list[Fault] = []
        for mid, reading in sample.readings.items():
            cells += [f"{v:.6g}" for v in reading.values.values()]
            cells += [reading.state.name.lower(), str(reading.parts_count)]
            present = sample.present[mid]
            present_all += present
            if multi:
                cells += ["1" if present else "0", "+".join(label(f) for f in present)]
        intensity = max((f.intensity(t) for f in present_all), default=0.0)
        cells += ["1" if present_all else "0", "+".join(label(f, multi) for f in present_all), f"{intensity:.4g}"]
        anomalous += bool(present_all)
        out.write(",".join(cells) + "\n")
        if progress is not None and sample.index % 100_000 == 0:
            progress(sample.index / rows)
    return RecordSummary(rows, anomalous, header)


def record(scenario: Scenario, duration_s: float, out: str | Path, step_s: float | None = None) -> RecordSummary:
    """Record to a file, atomically: written to ``<out>.part``, renamed when complete."""
    path = Path(out)
    partial = path.with_name(path.name + ".part")
    try:
        with partial.open("w", encoding="utf-8", newline="") as handle:
            summary = write_csv(scenario, duration_s, handle, step_s)
        os.replace(partial, path)
    except BaseException:
        partial.unlink(missing_ok=True)
        raise
    return summary
