"""Training data from InfluxDB history: a machine's good ``telemetry`` points as a table of rows.

``edge-agent model train --influx URL --database DB --machine M --since 24h`` uses it, so a model
can be learned from what the agent already stored instead of a CSV export. The query is InfluxQL
for the InfluxDB 1.x query API (``GET /query``), which InfluxDB 2.x also serves for a bucket
mapped to a database (DBRP) with a token, so one reader covers both. This module builds the query
and turns the answer into a table; the HTTP conversation is the InfluxDB client's
(``edge_agent.delivery.influx_writer``), which the command joins to this (alerts sits below
delivery and does not talk to the network).

What is read: measurement ``telemetry`` (docs/payloads.md), tag ``machine``, field ``value``
(numeric readings), only points whose ``quality`` field is ``good`` (an uncertain reading is not
normal data), one series per ``tag``. The answer arrives in chunks, added to the series one at a
time (``add_chunk``), so a day of 1 Hz data never sits in memory twice as JSON.

Tags are polled together but an OPC UA source timestamp differs per tag by a few milliseconds:
samples closer than half the poll interval are one row, so the features see the same rows as
live scoring does. A tag missing from a row is NaN there (no good reading), as live.
"""

from __future__ import annotations

import fnmatch
import json
from array import array
from typing import Any, TypeAlias

import numpy as np

from edge_agent.core.errors import ModelError
from models.csvdata import Table
from models.operating_state import RUNNING, SIMULATOR_CODES

EXCLUDE = ("*count*", "*counter*")
"""Tags never modelled by default (counters only ever grow), as the agent's ``exclude_signals``."""


def _quote(text: str) -> str:
    """An InfluxQL string literal."""
    return "'" + text.replace("\\", "\\\\").replace("'", "\\'") + "'"


def build_query(machine: str, since_s: float, tags: list[str] | None, site: str | None) -> str:
    """The InfluxQL that selects a machine's good numeric readings of the last ``since_s`` seconds."""
    where = [f'"machine" = {_quote(machine)}', "\"quality\" = 'good'", f"time > now() - {int(since_s)}s"]
    if site is not None:
        where.append(f'"site" = {_quote(site)}')
    if tags:
        where.append("(" + " OR ".join(f'"tag" = {_quote(t)}' for t in tags) + ")")
    clause = " AND ".join(where)  # every value in it went through _quote or is a number
    return f'SELECT "value" FROM "telemetry" WHERE {clause} GROUP BY "tag"'  # noqa: S608


Series: TypeAlias = "dict[str, tuple[array[float], array[float]]]"
"""Per tag ``(times in s, values)``: packed arrays of doubles (8 bytes a number, not a Python float
object each), so a day of ten signals at 1 Hz is 14 MB."""


def add_chunk(series: Series, document: bytes, where: str) -> int:
    """Add one JSON document of a chunked ``/query`` answer to ``series``; the number of rows it held.

    ``where`` names the InfluxDB and database in the ``ModelError`` raised for an error answer.
    """
    try:
        chunk = json.loads(document)
    except json.JSONDecodeError as exc:
        raise ModelError(f"{where}: the answer is not InfluxDB JSON ({exc}). Fix: check --influx") from None
    if "error" in chunk:
        raise ModelError(f"{where}: {chunk['error']}. Fix: check --database and the query")
    added = 0
    for result in chunk.get("results", []):
        if "error" in result:
            raise ModelError(f"{where}: {result['error']}. Fix: check --database (and that it holds telemetry)")
        for s in result.get("series", []):
            tag = str(s.get("tags", {}).get("tag", ""))
            times, values = series.setdefault(tag, (array("d"), array("d")))
            rows = s.get("values", [])
            for t, v in rows:
                if isinstance(v, int | float) and not isinstance(v, bool) and np.isfinite(v):
                    times.append(t / 1000.0)
                    values.append(float(v))
            added += len(rows)
    return added


def rows_from_series(series: Series, tags: list[str]) -> tuple[Any, Any]:
    """Align tags into rows: samples within half the typical interval of each other share a row.

    Returns ``(time_s, values)`` with ``values[i, j]`` = tag j in row i, NaN when it has none.
    """
    all_t = np.unique(np.concatenate([np.asarray(series[t][0]) for t in tags]))
    intervals = [float(np.median(np.diff(np.unique(series[t][0])))) for t in tags if len(series[t][0]) > 1]
    tolerance = 0.5 * min(intervals) if intervals else 0.0
    new_row = np.concatenate([[True], np.diff(all_t) > tolerance])
    row_of_time = np.cumsum(new_row) - 1
    time_s = all_t[new_row]
    values = np.full((len(time_s), len(tags)), np.nan)
    for j, tag in enumerate(tags):
        t, v = np.asarray(series[tag][0]), np.asarray(series[tag][1])
        rows = row_of_time[np.searchsorted(all_t, t)]
        values[rows, j] = v  # a tag twice in one row: the later sample wins
    return time_s, values


def wanted_tags(signals: list[str] | None, state_signal: str | None) -> list[str] | None:
    """The tags to query: the signals and the state signal, or all (None) when no signals are named."""
    return None if signals is None else [*signals, *([state_signal] if state_signal else [])]


def table_from_series(
    series: Series,
    where: str,
    since_s: float,
    *,
    signals: list[str] | None = None,
    state_signal: str | None = "state_code",
) -> Table:
    """A machine's good history as a ``Table`` (the CSV reader's type), checked like a CSV.

    ``where`` names InfluxDB, database and machine, in errors and as the table's origin.
    """
    if not series:
        raise ModelError(
            f"{where}: no good numeric telemetry in the last {since_s:g} s. "
            "Fix: check --machine (the machine id in the agent config), --since and --database"
        )
    if signals is None:
        signals = sorted(t for t in series if t != state_signal and not any(fnmatch.fnmatch(t, p) for p in EXCLUDE))
    missing = [s for s in signals if s not in series]
    if missing:
        raise ModelError(f"{where}: no good readings of {missing}. Fix: use tags from {sorted(series)}")
    if not signals:
        raise ModelError(f"{where}: only {sorted(series)} found, nothing to model. Fix: name tags with --signals")
    use_state = state_signal is not None and state_signal in series
    tags = [*signals, *([state_signal] if use_state and state_signal else [])]
    time_s, values = rows_from_series(series, tags)
    if use_state:
        codes = values[:, -1]
        values = values[:, :-1]
        states = [SIMULATOR_CODES.get(str(int(c)), str(int(c))) if np.isfinite(c) else "unknown" for c in codes]
    else:
        states = [RUNNING] * len(time_s)
    return Table(where, time_s, values, list(signals), states, None)
