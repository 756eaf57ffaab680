"""A labelled dataset for every machine kind: labels are on exactly while the fault is present.

The week-long recordings per kind are timed in ``bench/simulator_load.py``; here each kind gets
a shorter recording (CI time) with one of its own faults, and the labels are checked second
by second against the schedule, plus a healthy stretch before and after.
"""

from __future__ import annotations

import csv
import io

import pytest

from simulators import FAULT_KINDS, MACHINE_KINDS
from simulators.record import write_csv
from simulators.scenario import parse_scenario


def first_physical_fault(kind: str) -> str:
    return sorted(name for name, spec in FAULT_KINDS.items() if not spec.sensor and kind in spec.kinds)[0]


@pytest.mark.parametrize("kind", sorted(MACHINE_KINDS))
def test_labels_match_the_fault_schedule(kind: str) -> None:
    fault = first_physical_fault(kind)
    text = (
        f"seed: 5\nmachines: {{{kind}-1: {kind}}}\n"
        f"faults:\n  - {{machine: {kind}-1, fault: {fault}, at: 20m, duration: 15m, severity: 0.7}}\n"
    )
    out = io.StringIO()
    write_csv(parse_scenario(text), 3600, out)
    rows = list(csv.DictReader(io.StringIO(out.getvalue())))
    assert len(rows) == 3600
    for row in rows:
        t = float(row["time_s"])
        inside = 1200 <= t < 2100
        assert row["anomaly"] == ("1" if inside else "0"), f"{kind} at {t} s: {row['anomaly']}"
        assert row["fault"] == (fault if inside else ""), f"{kind} at {t} s: {row['fault']!r}"
    signals = [name for name in rows[0] if name in MACHINE_KINDS[kind].signal_names()]
    assert signals == list(MACHINE_KINDS[kind].signal_names())
