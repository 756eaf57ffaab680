"""Reading labelled CSV recordings (``edge-sim record`` or a historian export) for the offline CLI.

Every problem is a ``ModelError`` that names the file, the column (and row) and the fix, found
before anything is trained or written: a wrong file must cost a minute, not a wrong model.
"""

from __future__ import annotations

import csv
import math
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

import numpy as np
import numpy.typing as npt

from edge_agent.core.errors import ModelError
from models.operating_state import RUNNING, SIMULATOR_CODES

NOT_SIGNALS = {"time_s", "state", "parts_count", "anomaly", "fault", "fault_intensity"}
"""Columns of ``edge-sim record`` files that are never modelled (time, state, counters, labels)."""


@dataclass(frozen=True, slots=True)
class Table:
    """One recording: ``values[i, j]`` is ``signals[j]`` at ``time_s[i]`` (seconds since the epoch)."""

    path: str
    time_s: npt.NDArray[np.float64]
    values: npt.NDArray[np.float64]
    signals: list[str]
    states: list[str]
    labels: npt.NDArray[np.bool_] | None


def _parse_time(text: str) -> float:
    try:
        return float(text)
    except ValueError:
        pass
    moment = datetime.fromisoformat(text.strip())
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    return moment.timestamp()


def read_table(
    path: str | Path,
    *,
    time_column: str,
    sep: str = ",",
    signals: list[str] | None = None,
    label_column: str | None = None,
    state_column: str | None = "state",
    max_rows: int | None = None,
) -> Table:
    """Read and check a CSV. ``state_column`` is used when present (None: everything is running)."""
    where = str(path)
    header, rows = _read_rows(where, sep, max_rows)
    index = {name: i for i, name in enumerate(header)}
    if time_column not in index:
        hint = " Fix: pass --sep ';'" if len(header) == 1 and ";" in header[0] else f" Fix: use one of {header}"
        raise ModelError(f"{where}: no time column {time_column!r}.{hint}")
    if label_column is not None and label_column not in index:
        raise ModelError(f"{where}: no label column {label_column!r}. Fix: use one of {header}")
    if state_column is not None and state_column not in index:
        state_column = None
    if signals is None:
        skip = {time_column, label_column, state_column, *NOT_SIGNALS}
        first = rows[0] if rows else []
        signals = [h for h in header if h not in skip and _numeric(first, index[h])]
    missing = [s for s in signals if s not in index]
    if missing:
        raise ModelError(f"{where}: no column(s) {missing}. Fix: use names from {header}")
    if not signals:
        raise ModelError(f"{where}: no numeric signal columns found. Fix: name them with --signals")
    n = len(rows)
    time_s = np.empty(n)
    values = np.empty((n, len(signals)))
    cols = [index[s] for s in signals]
    for r, row in enumerate(rows):
        if len(row) != len(header):
            raise ModelError(f"{where}: line {r + 2} has {len(row)} fields, the header {len(header)}. Fix: --sep?")
        time_s[r] = _time(where, r + 2, time_column, row[index[time_column]])
        for j, c in enumerate(cols):
            values[r, j] = _finite(where, r + 2, signals[j], row[c])
    labels = None
    if label_column is not None:
        labels = np.array([_label(where, r + 2, label_column, row[index[label_column]]) for r, row in enumerate(rows)])
        labels = labels.astype(np.bool_).reshape(n)
    states = [_state(row[index[state_column]]) for row in rows] if state_column is not None else [RUNNING] * n
    if n > 1:
        bad = np.flatnonzero(np.diff(time_s) <= 0)
        if len(bad):
            t = index[time_column]
            raise ModelError(
                f"{where}: line {bad[0] + 3}: column {time_column!r} does not increase "
                f"({rows[bad[0] + 1][t]!r} after {rows[bad[0]][t]!r}). "
                "Fix: sort the file by time and drop duplicate rows"
            )
    return Table(where, time_s, values, list(signals), states, labels)


def _read_rows(where: str, sep: str, max_rows: int | None) -> tuple[list[str], list[list[str]]]:
    rows: list[list[str]] = []
    try:
        with Path(where).open(newline="") as f:
            reader = csv.reader(f, delimiter=sep)
            header = next(reader, None)
            for row in reader:
                if max_rows is not None and len(rows) >= max_rows:
                    break
                rows.append(row)
    except FileNotFoundError:
        raise ModelError(f"{where}: no such file. Fix: check the path") from None
    except (OSError, UnicodeDecodeError, csv.Error) as exc:
        raise ModelError(f"{where}: cannot read it as CSV ({exc}). Fix: export it as UTF-8 CSV") from exc
    if not header:
        raise ModelError(f"{where}: the file is empty. Fix: record or export data first")
    return [h.strip() for h in header], rows


def _time(where: str, line: int, column: str, text: str) -> float:
    try:
        return _parse_time(text)
    except ValueError:
        raise ModelError(
            f"{where}: line {line}: column {column!r}: {text!r} is not a time. Fix: ISO 8601 or seconds since the epoch"
        ) from None


def _finite(where: str, line: int, column: str, text: str) -> float:
    try:
        v = float(text)
    except ValueError:
        v = math.nan
    if not math.isfinite(v):
        raise ModelError(
            f"{where}: line {line}: column {column!r}: {text!r} is not a finite number. "
            "Fix: remove or fill such rows, or leave the column out with --signals"
        )
    return v


def _label(where: str, line: int, column: str, text: str) -> bool:
    text = text.strip()
    if text not in ("0", "1"):
        raise ModelError(
            f"{where}: line {line}: label column {column!r} holds {text!r}; labels must be 0 or 1. "
            "Fix: pick the 0/1 column (edge-sim records 'anomaly')"
        )
    return text == "1"


def _numeric(row: list[str], i: int) -> bool:
    try:
        float(row[i])
    except (ValueError, IndexError):
        return False
    return True


def _state(text: str) -> str:
    text = text.strip()
    return SIMULATOR_CODES.get(text, text or "unknown")


def check_trainable(table: Table, min_rows: int, min_windows: int) -> None:
    """Enough rows for ``min_windows`` windows, and no signal that never changes (it would only ever
    alert on noise)."""
    if len(table.time_s) < min_rows:
        raise ModelError(
            f"{table.path}: only {len(table.time_s)} rows; training needs at least {min_rows} "
            f"({min_windows} windows of normal running). Fix: use a longer recording or a shorter --window/--hop"
        )
    usable = np.array([s == RUNNING for s in table.states])
    if table.labels is not None:
        usable &= ~table.labels
    x = table.values[usable] if usable.any() else table.values
    flat = [s for j, s in enumerate(table.signals) if float(np.ptp(x[:, j])) == 0.0]
    if flat:
        raise ModelError(
            f"{table.path}: column(s) {flat} never change while running; a model cannot learn from them. "
            f"Fix: leave them out with --signals {' '.join(s for s in table.signals if s not in flat)}"
        )
