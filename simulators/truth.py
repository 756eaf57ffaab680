"""The ground-truth timeline as data: one entry per fault (machine, fault, start, end, severity).

Recordings label every row; the timeline is the same truth as intervals, which is what an
alert evaluation compares against (was there an alert between start and end?). Offline runs
place simulated seconds on the scenario's start time; live runs use the wall-clock timestamps
of the first update served with and without the fault.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from pathlib import Path

from simulators.faults import Fault

_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


def _iso_ns(timestamp_ns: int | None) -> str | None:
    if timestamp_ns is None:
        return None
    return (_EPOCH + timedelta(microseconds=timestamp_ns // 1000)).isoformat(timespec="milliseconds")


def timeline(faults: list[Fault], start: datetime | None = None) -> list[dict[str, object]]:
    """Plain-data timeline, oldest first.

    With ``start`` (offline), ``start``/``end`` are ``start + start_s``/``end_s``; without it
    (live), they come from the served wall-clock timestamps and are None until served.
    ``end`` None means the fault lasted to the end of the run.
    """
    rows = []
    for fault in sorted(faults, key=lambda f: (f.start_s, f.fault_id)):
        row = fault.to_dict()
        if start is not None:
            row["start"] = (start + timedelta(seconds=fault.start_s)).isoformat(timespec="milliseconds")
            end = None if fault.end_s is None else start + timedelta(seconds=fault.end_s)
            row["end"] = None if end is None else end.isoformat(timespec="milliseconds")
        else:
            row["start"] = _iso_ns(fault.start_ns)
            row["end"] = _iso_ns(fault.end_ns)
        rows.append(row)
    return rows


def write_timeline(path: str | Path, rows: list[dict[str, object]]) -> None:
    """Write the timeline as a JSON list (small: one entry per fault)."""
    Path(path).write_text(json.dumps(rows, indent=2) + "\n", encoding="utf-8")
