"""Telemetry batches with known values and times, and counting what InfluxDB stored of them."""

from __future__ import annotations

from edge_agent.core.samples import Batch, Sample
from tests.helpers.servers import InfluxDB1

T0 = 1_763_800_000_000_000_000


def batch(index: int, machine: str = "m1") -> Batch:
    """One tag ``x`` = ``index`` at ``T0 + index`` ns."""
    return Batch(machine, (Sample("x", float(index), T0 + index),), polled_at_ns=T0 + index)


def xy_batch(index: int, value: float | str | None = None) -> Batch:
    """Tags ``x`` (``index`` unless ``value`` is given) and ``y`` = 2 x ``index`` of machine m1."""
    v = float(index) if value is None else value
    return Batch("m1", (Sample("x", v, T0 + index), Sample("y", 2.0 * index, T0 + index)), polled_at_ns=T0 + index)


def telemetry_points(influx: InfluxDB1, database: str) -> int:
    """How many telemetry points ``database`` holds (blocking: call it through ``asyncio.to_thread``)."""
    rows = influx.query("SELECT COUNT(quality) FROM telemetry", database)
    return int(rows[0]["count"]) if rows else 0
