"""The delivery sections of the config: the MQTT broker, the InfluxDB server and the outbox.

Secrets are ``SecretStr`` and are best written as ``${ENV_VAR}`` or ``${file:/path}`` references,
which the loader resolves.
"""

from __future__ import annotations

from typing import Literal, Self
from urllib.parse import urlsplit

from pydantic import ByteSize, Field, SecretStr, field_validator, model_validator

from edge_agent.core.config_base import StrictModel
from edge_agent.core.durations import Duration


class TlsConfig(StrictModel):
    """TLS towards the broker."""

    ca_file: str | None = None
    cert_file: str | None = None
    key_file: str | None = None
    insecure_skip_hostname_check: bool = False


class MqttConfig(StrictModel):
    """The MQTT broker the agent publishes to and the ingest bridge reads from."""

    host: str = Field(default="127.0.0.1", min_length=1, max_length=253)
    port: int = Field(default=1883, ge=1, le=65535)
    client_id: str | None = Field(default=None, description="Default: edge-agent-<site.name>.")
    username: str | None = None
    password: SecretStr | None = None
    tls: TlsConfig | None = None
    topic_prefix: str = Field(default="edge", pattern=r"^[^+#\s]+$")
    payload_format: Literal["json", "line"] = "json"
    qos: Literal[0, 1] = 1
    keepalive: Duration = Field(
        default=30.0, ge=1, le=65535, description="Seconds between pings; MQTT allows 1 to 65535 (18 h)."
    )
    connect_timeout: Duration = Field(default=10.0, gt=0, le=600)
    max_queued_messages: int = Field(default=10000, ge=1, le=10_000_000)

    @field_validator("host")
    @classmethod
    def _host_is_a_name(cls, host: str) -> str:
        if "@" in host:
            raise ValueError(
                "the host holds a user name or password (user:password@host), which would show up in logs and "
                "status pages. Fix: write only the host name, and put the login in mqtt.username and "
                "mqtt.password (password: ${file:/etc/edge-agent/mqtt-password})"
            )
        if "://" in host or "/" in host or any(c.isspace() for c in host):
            raise ValueError(
                "the host must be a host name or address, not a URL or path. Fix: write e.g. host: broker.plant.lan, "
                "with port: 8883 and a tls: section for TLS"
            )
        return host


class InfluxConfig(StrictModel):
    """The InfluxDB the ingest bridge writes to. ``version: 1`` uses ``/write?db=``; 2 uses the v2 API."""

    version: Literal[1, 2] = 2
    url: str = Field(default="http://127.0.0.1:8086", pattern=r"^https?://", max_length=2048)
    database: str | None = Field(default=None, description="InfluxDB 1.x database.")
    retention_policy: str | None = None
    username: str | None = None
    password: SecretStr | None = None
    org: str | None = Field(default=None, description="InfluxDB 2.x/3.x organisation.")
    bucket: str | None = Field(default=None, description="InfluxDB 2.x/3.x bucket.")
    token: SecretStr | None = None
    timeout: Duration = Field(default=10.0, gt=0, le=600)

    @field_validator("url")
    @classmethod
    def _url_without_credentials(cls, url: str) -> str:
        parts = urlsplit(url)
        if "@" in parts.netloc:
            raise ValueError(
                "the url holds a user name, password or token (user:password@host), which would show up in logs "
                "and status pages. Fix: remove it from the url; put the login in influxdb.username and "
                "influxdb.password (InfluxDB 1.x) or influxdb.token (2.x/3.x), e.g. token: ${file:/etc/edge-agent/"
                "influx-token}"
            )
        try:
            parts.port  # noqa: B018 - raises for a port that is not a number in 0-65535
        except ValueError:
            raise ValueError(
                "the url's port is not a number from 1 to 65535. Fix: write e.g. http://host:8086"
            ) from None
        if not parts.hostname or any(c.isspace() for c in url):
            raise ValueError("the url names no host (or holds spaces). Fix: write e.g. http://influxdb.plant.lan:8086")
        return url

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


MAX_OUTBOX_BYTES = 16 * 1024**4
"""16 TiB: more than any disk of a line PC, well within SQLite's 64-bit integers."""


class OutboxConfig(StrictModel):
    """The durable outbox every batch passes through before it is sent (see docs/delivery.md)."""

    path: str | None = Field(
        default=None,
        description="SQLite file. Default: $STATE_DIRECTORY or ~/.local/state/edge-agent, outbox-<client id>.sqlite.",
    )
    max_bytes: ByteSize = Field(
        default=ByteSize(256 * 1024 * 1024),
        le=MAX_OUTBOX_BYTES,
        description="Payload bytes kept; beyond, the oldest are dropped.",
    )
    max_age: Duration = Field(
        default=7 * 86400.0, ge=0, description="Batches older than this are dropped; 0 = no limit."
    )
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
