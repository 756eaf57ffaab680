"""The ``ingest:`` section: the MQTT to InfluxDB bridge (``edge-agent ingest``)."""

from __future__ import annotations

from pydantic import Field, field_validator

from edge_agent.core.config_base import StrictModel
from edge_agent.core.durations import Duration


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

    @field_validator("dead_letter_prefix")
    @classmethod
    def _dead_letter_prefix_is_a_topic(cls, prefix: str | None) -> str | None:
        if prefix is not None and (not prefix.strip("/") or any(c in prefix for c in "+#")):
            raise ValueError(
                f"{prefix!r} cannot be a topic prefix (empty, or with the wildcards + or #). "
                "Fix: use a plain topic such as edge/_deadletter, or remove the key for the default"
            )
        return prefix
