"""Turning MQTT payloads into line-protocol request bodies: plain data in, plain data out.

``parse_many`` takes ``(topic, payload)`` pairs and gives, per message, its lines already joined
and encoded as a request body (with the number of points), or the reason it is malformed.
The dead-letter publish, counting and acking stay in the bridge. Plain data on both sides keeps
the door open to parsing in a worker process; docs/delivery.md says why the bridge does not (yet).

Every message stands alone: whatever goes wrong with one (a ``PayloadError``, a string that is not
valid UTF-8, or a bug) becomes that message's reason and the next message is parsed as usual, so
one message can never stop the stream. The topic a message came on,
``{prefix}/{site}/{area}/{line}/{machine}/{kind}``, is the identity its points must carry: a
publisher allowed on one machine's topic cannot write another machine's points (docs/security.md).
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Collection, Mapping
from dataclasses import dataclass
from typing import Any

from edge_agent.alerts.events import alert_event_to_line, score_to_line
from edge_agent.core.errors import PayloadError
from edge_agent.core.payload_json import load_json
from edge_agent.delivery.payloads import MEASUREMENT
from edge_agent.ingest.fastjson import Identity, identity_mismatch, telemetry_lines
from edge_agent.ingest.lineproto import IDENTITY_TAGS, check_line_protocol

__all__ = ["TOPIC_KINDS", "ParseRules", "ParsedPayload", "parse_many", "parse_payload", "topic_identity"]

log = logging.getLogger(__name__)

# The encoded lines of a message and how many points they are, or why it is malformed.
ParsedPayload = tuple[bytes, int] | str


@dataclass(frozen=True, slots=True)
class ParseRules:
    """What the bridge holds payloads to: the topic prefix (for identities) and the line-protocol measurements."""

    topic_prefix: str
    line_protocol_measurements: frozenset[str] = frozenset({MEASUREMENT})


def topic_identity(topic: str, topic_prefix: str) -> Identity | None:
    """site, area, line and machine of ``{prefix}/{site}/{area}/{line}/{machine}/{kind}``; None for another shape."""
    prefix = topic_prefix.rstrip("/") + "/"
    if not topic.startswith(prefix):
        return None
    levels = topic[len(prefix) :].split("/")
    if len(levels) != 5:
        return None
    return levels[0], levels[1], levels[2], levels[3]


def parse_payload(
    payload: bytes, expected: Identity | None = None, allowed: Collection[str] | None = None
) -> list[str]:
    """The line-protocol points of one MQTT payload: JSON schema 1 if it starts with ``{``, else line protocol.

    ``expected``: the identity of the topic (None: not checked); ``allowed``: the measurements line
    protocol may write to (None: any). Raises ``PayloadError`` saying what is wrong.
    """
    if payload[:1] == b"{" or payload.lstrip()[:1] == b"{":
        return telemetry_lines(payload, expected)
    return check_line_protocol(payload, allowed=allowed, expected=expected)


def _event_lines(convert: Callable[[Mapping[str, Any]], str], payload: bytes, expected: Identity | None) -> list[str]:
    """An alert event or a score (JSON only) as one line, if it names the machine of its topic."""
    event = load_json(payload)
    line = convert(event)  # checks the shape first: the identity keys are then known to be strings
    if expected is not None:
        mismatch = identity_mismatch(tuple(event[key] for key in IDENTITY_TAGS), expected)
        if mismatch is not None:
            raise PayloadError(mismatch)
    return [line]


# The last topic level says how to read a payload. Alert events and scores are JSON only.
TOPIC_KINDS: dict[str, Callable[[bytes, Identity | None, Collection[str] | None], list[str]]] = {
    "telemetry": parse_payload,
    "alerts": lambda payload, expected, _allowed: _event_lines(alert_event_to_line, payload, expected),
    "scores": lambda payload, expected, _allowed: _event_lines(score_to_line, payload, expected),
}


def parse_one(topic: str, payload: bytes, rules: ParseRules) -> ParsedPayload:
    """One message's request body and point count, or the reason it cannot be written."""
    expected = topic_identity(topic, rules.topic_prefix)
    if expected is None:
        return f"topic {topic[:200]!r} is not {rules.topic_prefix}/<site>/<area>/<line>/<machine>/<kind>"
    convert = TOPIC_KINDS.get(topic.rpartition("/")[2], parse_payload)
    try:
        lines = convert(payload, expected, rules.line_protocol_measurements)
        return "\n".join(lines).encode(), len(lines)
    except PayloadError as exc:
        return str(exc)
    except UnicodeEncodeError as exc:  # a lone surrogate (\ud800) in a string: JSON allows it, UTF-8 does not
        return f"a string holds {exc.object[exc.start : exc.end]!r}, a lone surrogate, which is not valid UTF-8"
    except Exception as exc:  # a bug in a parser costs this one message, never the stream
        log.debug("ingest: parsing a payload on %s failed", topic, exc_info=True)
        return f"the bridge could not parse it ({type(exc).__name__}: {str(exc)[:200]}); please report it"


def parse_many(items: list[tuple[str, bytes]], rules: ParseRules) -> list[ParsedPayload]:
    """Parse ``(topic, payload)`` pairs, in order."""
    return [parse_one(topic, payload, rules) for topic, payload in items]
