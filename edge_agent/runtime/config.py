"""The whole configuration file (pydantic v2), composed of the sections each room owns.

Loading and error formatting live in ``loader``. The delivery, ingest, alerts and web sections
are defined in their rooms, so each room reads only its own section.

Every model forbids unknown keys. Secrets are ``SecretStr`` and are best written as
``${ENV_VAR}`` or ``${file:/path}`` references, which the loader resolves.
"""

from __future__ import annotations

from typing import Literal, Self

from pydantic import Field, model_validator

from connectors import MachineConfig
from edge_agent.alerts.config import AlertsConfig
from edge_agent.core.config_base import MACHINE_ID_PATTERN, StrictModel
from edge_agent.core.identifiers import TOPIC_WORD_PATTERN
from edge_agent.delivery.config import InfluxConfig, MqttConfig, OutboxConfig, TlsConfig
from edge_agent.ingest.config import IngestConfig
from edge_agent.web.config import WebConfig

TOPIC_WORD = TOPIC_WORD_PATTERN


class SiteConfig(StrictModel):
    """Where the agent sits in the plant; names the MQTT topics and the InfluxDB tags."""

    name: str = Field(default="site", pattern=TOPIC_WORD)
    area: str = Field(default="area", pattern=TOPIC_WORD)
    line: str = Field(default="line", pattern=TOPIC_WORD)


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
    "TlsConfig",
]
