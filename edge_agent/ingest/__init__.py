"""``edge-agent ingest``: telemetry, alert events and anomaly scores from MQTT into InfluxDB.

See ``bridge`` for the guarantees and ``deadletter`` for where malformed payloads go.
"""
