"""Real servers for the ingest tests (see tests/servers.py)."""

from tests.servers import (  # noqa: F401 - fixtures are found by name
    fresh_influxdb1,
    fresh_mosquitto,
    influxdb1,
    mosquitto,
    victoria_metrics,
)
