"""Credentials a config would send across the network in clear text, said once when the agent starts.

Not an error: a broker on an isolated line network without TLS is a choice some plants make. But
it must be a choice, so ``run`` and ``ingest`` log it at start (and ``check-config`` prints it):
the MQTT password or the InfluxDB token is readable by anyone on the path to the server. Traffic
to this computer itself (loopback) never leaves it and is not warned about.
"""

from __future__ import annotations

from urllib.parse import urlsplit

from edge_agent.runtime.config import AgentConfig
from edge_agent.web.config import is_loopback


def cleartext_credentials(config: AgentConfig, *, mqtt: bool = True, influxdb: bool = True) -> list[str]:
    """One warning per section (``mqtt``, ``influxdb``: the ones the command uses) whose login travels unencrypted."""
    warnings: list[str] = []
    broker = config.mqtt
    if mqtt and broker is not None and broker.tls is None and not is_loopback(broker.host):
        keys = [key for key in ("username", "password") if getattr(broker, key) is not None]
        if keys:
            warnings.append(
                f"mqtt.{' and mqtt.'.join(keys)} travel to {broker.host}:{broker.port} without TLS, readable by "
                "anyone on the network path. Fix: add an mqtt.tls section (ca_file: ...) and the broker's TLS "
                "port (usually 8883)"
            )
    database = config.influxdb
    if influxdb and database is not None:
        url = urlsplit(database.url)
        keys = [key for key in ("token", "password") if getattr(database, key) is not None]
        if keys and url.scheme == "http" and not is_loopback(url.hostname or ""):
            warnings.append(
                f"influxdb.{' and influxdb.'.join(keys)} travel to {url.hostname} over plain http, readable by "
                "anyone on the network path. Fix: serve InfluxDB over TLS and write the url as https://..."
            )
    return warnings
