"""Delivery: where a batch goes after a poll, durably.

The outbox (SQLite) keeps every batch until the MQTT broker or InfluxDB acknowledged it; the
MQTT publisher and the direct InfluxDB sink send from it; payloads are the wire format.
"""
