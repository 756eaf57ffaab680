"""``edge-agent ingest``: telemetry, alert events and anomaly scores from MQTT into InfluxDB.

See ``bridge`` for the guarantees and ``deadletter`` for where malformed payloads go.
"""

from edge_agent.ingest.bridge import (
    IngestBridge,
    IngestStats,
    parse_payload,
    run_ingest,
    subscriptions,
    telemetry_subscription,
)
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
    "subscriptions",
    "telemetry_subscription",
]
