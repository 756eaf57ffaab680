"""``edge-agent ingest``: the bridge from MQTT telemetry to InfluxDB (see ``bridge`` for the guarantees)."""

from edge_agent.ingest.bridge import IngestBridge, IngestStats, parse_payload, run_ingest, telemetry_subscription
from edge_agent.ingest.writers import (
    InfluxV1Writer,
    InfluxV2Writer,
    InfluxWriter,
    RejectedPoints,
    WriteFailed,
    make_writer,
)

__all__ = [
    "InfluxV1Writer",
    "InfluxV2Writer",
    "InfluxWriter",
    "IngestBridge",
    "IngestStats",
    "RejectedPoints",
    "WriteFailed",
    "make_writer",
    "parse_payload",
    "run_ingest",
    "telemetry_subscription",
]
