"""What the bridge counts, and the records a message passes through on its way from MQTT to InfluxDB."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field

__all__ = ["IngestStats", "Message", "Parsed"]


@dataclass
class IngestStats:
    """Counters for the status page and tests. Messages are MQTT messages; points are InfluxDB points.

    ``writes`` counts successful write requests (a batch is one), ``write_errors`` failed attempts,
    ``rejected`` messages whose points InfluxDB refused as bad data, ``malformed`` messages set aside
    before writing; of those, ``dead_lettered`` were acknowledged by the broker on the dead-letter
    topic and ``dead_letter_failed`` were refused by it (lost, logged at ERROR). ``ignored`` counts
    empty messages on the alerts/scores topics (a retained message being cleared).
    ``received_by_kind`` counts messages per topic kind (telemetry, alerts, scores).
    ``queued``/``queued_bytes`` are the messages received and not yet parsed (``…_peak`` their highest);
    ``dropped`` the QoS 0 messages dropped because that queue was full (``queue_full``).
    ``influx_ok`` is None until the start-up ping or a write has answered.
    """

    received: int = 0
    writes: int = 0
    written_points: int = 0
    malformed: int = 0
    rejected: int = 0
    write_errors: int = 0
    acked: int = 0
    dead_lettered: int = 0
    dead_letter_failed: int = 0
    ignored: int = 0
    dropped: int = 0
    queued: int = 0
    queued_bytes: int = 0
    queued_peak: int = 0
    queued_bytes_peak: int = 0
    queue_full: bool = False
    connected: bool = False
    influx_ok: bool | None = None
    malformed_by_kind: dict[str, int] = field(default_factory=dict)
    received_by_kind: dict[str, int] = field(default_factory=dict)


@dataclass(slots=True)
class Message:
    """One MQTT message as received, stamped with the connection (``generation``) that may ack it."""

    mid: int
    qos: int
    topic: str
    payload: bytes
    generation: int


@dataclass(slots=True)
class Parsed:
    """A message and its points (encoded lines); a malformed one has none and waits for its dead letter's PUBACK."""

    message: Message
    body: bytes
    points: int
    dead_letter: asyncio.Future[bool] | None = None
