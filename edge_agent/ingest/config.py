"""The ``ingest:`` section: the MQTT to InfluxDB bridge (``edge-agent ingest``)."""

from __future__ import annotations

from typing import Annotated

from pydantic import ByteSize, Field, field_validator

from edge_agent.core.config_base import StrictModel
from edge_agent.core.durations import Duration
from edge_agent.core.payload_json import MAX_PAYLOAD_BYTES

MEASUREMENT_NAME_PATTERN = r"^[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}$"


class IngestConfig(StrictModel):
    """The MQTT → InfluxDB bridge (``edge-agent ingest``)."""

    client_id: str = "edge-agent-ingest"
    share_group: str | None = Field(
        default=None, description="MQTT 5 shared-subscription group, to run several bridges side by side."
    )
    batch_size: int = Field(default=5000, ge=1, le=1_000_000, description="Points per InfluxDB write.")
    flush_interval: Duration = Field(default=1.0, gt=0, le=3600)
    dead_letter_prefix: str | None = Field(
        default=None,
        description="Where malformed payloads go, with the reason, before they are acked. "
        "Default: {topic_prefix}/_deadletter.",
    )
    line_protocol_measurements: list[Annotated[str, Field(pattern=MEASUREMENT_NAME_PATTERN)]] = Field(
        default_factory=lambda: ["telemetry"],
        min_length=1,
        description="Measurements a line-protocol payload may write to; a point for any other is dead-lettered. "
        "Add e.g. Telegraf's measurements here; alerts and anomaly_score are written from their own topics only.",
    )
    max_queued_messages: int = Field(
        default=20000,
        ge=1,
        description="Messages received and not yet parsed. Beyond, QoS 0 messages are dropped and counted "
        "(QoS 1 ones wait in the broker: the receive window bounds them).",
    )
    max_queued_bytes: ByteSize = Field(
        default=ByteSize(64 * 1024 * 1024),
        description="Payload bytes received and not yet parsed; the same rule as max_queued_messages.",
    )

    @field_validator("max_queued_bytes")
    @classmethod
    def _room_for_a_payload(cls, value: ByteSize) -> ByteSize:
        if value < MAX_PAYLOAD_BYTES:
            raise ValueError(
                f"{value} bytes cannot hold one payload of the largest size ({MAX_PAYLOAD_BYTES} bytes). "
                "Fix: at least 4MiB; the default is 64MiB"
            )
        return value

    @field_validator("dead_letter_prefix")
    @classmethod
    def _dead_letter_prefix_is_a_topic(cls, prefix: str | None) -> str | None:
        if prefix is not None and (not prefix.strip("/") or any(c in prefix for c in "+#")):
            raise ValueError(
                f"{prefix!r} cannot be a topic prefix (empty, or with the wildcards + or #). "
                "Fix: use a plain topic such as edge/_deadletter, or remove the key for the default"
            )
        return prefix
