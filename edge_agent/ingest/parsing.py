"""Turning MQTT payloads into line-protocol request bodies: plain data in, plain data out.

``parse_many`` takes ``(topic kind, payload)`` pairs and gives, per message, its lines already
joined and encoded as a request body (with the number of points), or the reason it is malformed.
The dead-letter publish, counting and acking stay in the bridge. Plain data on both sides keeps
the door open to parsing in a worker process; docs/delivery.md says why the bridge does not (yet).
"""

from __future__ import annotations

from collections.abc import Callable

from edge_agent.alerts.events import alert_payload_to_lines, score_payload_to_lines
from edge_agent.core.errors import PayloadError
from edge_agent.ingest.fastjson import telemetry_lines
from edge_agent.ingest.lineproto import check_line_protocol

__all__ = ["TOPIC_KINDS", "ParsedPayload", "parse_many", "parse_payload"]

# The encoded lines of a message and how many points they are, or why it is malformed.
ParsedPayload = tuple[bytes, int] | str


def parse_payload(payload: bytes) -> list[str]:
    """The line-protocol points of one MQTT payload: JSON schema 1 if it starts with ``{``, else line protocol.

    Raises ``PayloadError`` saying what is wrong.
    """
    if payload[:1] == b"{" or payload.lstrip()[:1] == b"{":
        return telemetry_lines(payload)
    return check_line_protocol(payload)


# The last topic level says how to read a payload. Alert events and scores are JSON only.
TOPIC_KINDS: dict[str, Callable[[bytes], list[str]]] = {
    "telemetry": parse_payload,
    "alerts": alert_payload_to_lines,
    "scores": score_payload_to_lines,
}


def parse_many(items: list[tuple[str, bytes]]) -> list[ParsedPayload]:
    """Parse ``(topic kind, payload)`` pairs, in order."""
    results: list[ParsedPayload] = []
    for kind, payload in items:
        try:
            lines = TOPIC_KINDS.get(kind, parse_payload)(payload)
        except PayloadError as exc:
            results.append(str(exc))
            continue
        results.append(("\n".join(lines).encode(), len(lines)))
    return results
