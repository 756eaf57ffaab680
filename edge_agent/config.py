"""The agent's configuration model (pydantic v2). Loading and error formatting live in ``loader``.

Every model forbids unknown keys. Secrets are ``SecretStr`` and are best written as
``${ENV_VAR}`` or ``${file:/path}`` references, which the loader resolves.
"""

from __future__ import annotations

from typing import Literal, Self

from pydantic import ByteSize, Field, SecretStr, field_validator, model_validator

from connectors import MachineConfig
from connectors.base import MACHINE_ID_PATTERN, StrictModel
from edge_agent.alerts.config import AlertsConfig
from edge_agent.durations import Duration
from edge_agent.web.config import WebConfig

TOPIC_WORD = r"^[^/+#\s]+$"


class SiteConfig(StrictModel):
    """Where the agent sits in the plant; names the MQTT topics and the InfluxDB tags."""

    name: str = Field(default="site", pattern=TOPIC_WORD)
    area: str = Field(default="area", pattern=TOPIC_WORD)
    line: str = Field(default="line", pattern=TOPIC_WORD)


class TlsConfig(StrictModel):
    """TLS towards the broker."""

    ca_file: str | None = None
    cert_file: str | None = None
    key_file: str | None = None
    insecure_skip_hostname_check: bool = False


class MqttConfig(StrictModel):
    """The MQTT broker the agent publishes to and the ingest bridge reads from."""

    host: str = "127.0.0.1"
    port: int = Field(default=1883, ge=1, le=65535)
    client_id: str | None = Field(default=None, description="Default: edge-agent-<site.name>.")
    username: str | None = None
    password: SecretStr | None = None
    tls: TlsConfig | None = None
    topic_prefix: str = Field(default="edge", pattern=r"^[^+#\s]+$")
    payload_format: Literal["json", "line"] = "json"
    qos: Literal[0, 1] = 1
    keepalive: Duration = 30.0
    connect_timeout: Duration = 10.0
    max_queued_messages: int = Field(default=10000, ge=1)


class InfluxConfig(StrictModel):
    """The InfluxDB the ingest bridge writes to. ``version: 1`` uses ``/write?db=``; 2 uses the v2 API."""

    version: Literal[1, 2] = 2
    url: str = Field(default="http://127.0.0.1:8086", pattern=r"^https?://")
    database: str | None = Field(default=None, description="InfluxDB 1.x database.")
    retention_policy: str | None = None
    username: str | None = None
    password: SecretStr | None = None
    org: str | None = Field(default=None, description="InfluxDB 2.x/3.x organisation.")
    bucket: str | None = Field(default=None, description="InfluxDB 2.x/3.x bucket.")
    token: SecretStr | None = None
    timeout: Duration = 10.0

    @model_validator(mode="after")
    def _target_is_named(self) -> Self:
        if self.version == 1 and not self.database:
            raise ValueError("influxdb.version is 1 but influxdb.database is not set. Fix: add database: <name>")
        if self.version == 2 and not (self.bucket and self.org):
            raise ValueError(
                "influxdb.version is 2 but influxdb.org and influxdb.bucket are not both set. "
                "Fix: add org: <org> and bucket: <bucket>"
            )
        return self


class IngestConfig(StrictModel):
    """The MQTT → InfluxDB bridge (``edge-agent ingest``)."""

    client_id: str = "edge-agent-ingest"
    share_group: str | None = Field(
        default=None, description="MQTT 5 shared-subscription group, to run several bridges side by side."
    )
    batch_size: int = Field(default=5000, ge=1, description="Points per InfluxDB write.")
    flush_interval: Duration = 1.0
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


class OutboxConfig(StrictModel):
    """The durable outbox every batch passes through before it is sent (see docs/delivery.md)."""

    path: str | None = Field(
        default=None,
        description="SQLite file. Default: $STATE_DIRECTORY or ~/.local/state/edge-agent, outbox-<client id>.sqlite.",
    )
    max_bytes: ByteSize = Field(
        default=ByteSize(256 * 1024 * 1024), description="Payload bytes kept; beyond, the oldest are dropped."
    )
    max_age: Duration = Field(default=7 * 86400.0, description="Batches older than this are dropped; 0 = no limit.")
    synchronous: Literal["normal", "full"] = Field(
        default="normal", description="normal survives a crash of the agent; full also a power cut (slower)."
    )
    max_in_flight: int = Field(default=100, ge=1, le=65535, description="Messages sent and not yet acknowledged.")
    deliver_to: Literal["mqtt", "influxdb"] = Field(
        default="mqtt", description="influxdb: write straight to the influxdb section, no broker (single box)."
    )

    @field_validator("max_bytes")
    @classmethod
    def _room_for_a_batch(cls, value: ByteSize) -> ByteSize:
        if value < 4096:
            raise ValueError(f"{value} bytes cannot hold a batch. Fix: at least 4KiB; a few hundred MiB is usual")
        return value


class LoggingConfig(StrictModel):
    """How much the agent says."""

    level: Literal["DEBUG", "INFO", "WARNING", "ERROR"] = "INFO"


class AgentConfig(StrictModel):
    """The whole configuration file."""

    site: SiteConfig = SiteConfig()
    machines: list[MachineConfig] = Field(default_factory=list)
    mqtt: MqttConfig | None = None
    influxdb: InfluxConfig | None = None
    ingest: IngestConfig = IngestConfig()
    outbox: OutboxConfig = OutboxConfig()
    logging: LoggingConfig = LoggingConfig()
    web: WebConfig | None = None
    alerts: AlertsConfig | None = None

    @model_validator(mode="after")
    def _outbox_target_is_configured(self) -> Self:
        if self.outbox.deliver_to == "influxdb" and self.influxdb is None:
            raise ValueError(
                "outbox.deliver_to is influxdb but there is no influxdb section. "
                "Fix: add influxdb: {version: ..., url: ...} or remove outbox.deliver_to"
            )
        return self

    @model_validator(mode="after")
    def _dead_letters_are_not_read_back(self) -> Self:
        prefix = self.ingest.dead_letter_prefix
        telemetry = self.mqtt.topic_prefix.rstrip("/") if self.mqtt is not None else None
        if prefix is not None and prefix.rstrip("/") == telemetry:
            raise ValueError(
                f"ingest.dead_letter_prefix {prefix!r} is the telemetry prefix: the bridge would read its own dead "
                f"letters back. Fix: use e.g. {telemetry}/_deadletter, or remove the key"
            )
        return self

    def machine(self, machine_id: str) -> MachineConfig:
        """The machine with this id; KeyError names the ones that exist."""
        for machine in self.machines:
            if machine.id == machine_id:
                return machine
        raise KeyError(f"no machine {machine_id!r}; machines: {', '.join(m.id for m in self.machines)}")


__all__ = [
    "MACHINE_ID_PATTERN",
    "AgentConfig",
    "InfluxConfig",
    "IngestConfig",
    "MqttConfig",
    "OutboxConfig",
    "SiteConfig",
]
