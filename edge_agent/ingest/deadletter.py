"""Dead-letter messages: a payload the bridge cannot use, forwarded with the reason instead of dropped.

A malformed payload can never be written, and holding it back would stop the stream for every
machine behind it, so the bridge acks it. Before that it publishes it (QoS 1) to a dead-letter
topic, and acks the original only after the broker acknowledged the copy: the bytes are kept
somewhere a person (or a tool) can look at them, next to the reason. Pure functions, no I/O.

Topic: ``{dead-letter prefix}/{original topic without the telemetry prefix}``; the default dead-letter
prefix is ``{prefix}/_deadletter``, so ``edge/plant/hall/line-1/pump-1/telemetry`` goes to
``edge/_deadletter/plant/hall/line-1/pump-1/telemetry``. One more level than the bridge's own
subscriptions (``{prefix}/+/+/+/+/telemetry``), so a dead letter is never read back by the bridge;
``{prefix}/_deadletter/#`` shows them all, and a machine's own can be picked out by topic.

Payload, JSON::

    {"schema": 1, "topic": "edge/plant/hall/line-1/pump-1/telemetry",
     "reason": "samples[3]: 't' must be int, got str", "kind": "samples[N]: …",
     "received_at": "2026-01-05T14:15:31.123Z", "bridge": "edge-agent-ingest",
     "size": 812, "truncated": false, "encoding": "utf-8", "payload": "{\\"schema\\": 1, ..."}

``encoding`` is ``utf-8`` when the original bytes are valid UTF-8 (``payload`` is then that text),
else ``base64``. ``size`` is the original's length in bytes; a payload over ``max_bytes`` is cut
to that length (``truncated``: true) so one huge message cannot exceed the broker's packet limit.
"""

from __future__ import annotations

import base64
import json
from datetime import UTC, datetime

__all__ = ["DEAD_LETTER_SCHEMA", "dead_letter_payload", "dead_letter_prefix", "dead_letter_topic"]

DEAD_LETTER_SCHEMA = 1
DEFAULT_SEGMENT = "_deadletter"


def dead_letter_prefix(topic_prefix: str, configured: str | None = None) -> str:
    """The configured dead-letter prefix, or ``{topic_prefix}/_deadletter``.

    Raises ``ValueError`` when it equals the telemetry prefix: the bridge would read its own dead
    letters back and forward them again, for ever.
    """
    prefix = topic_prefix.rstrip("/")
    chosen = (configured or f"{prefix}/{DEFAULT_SEGMENT}").rstrip("/")
    if chosen == prefix or not chosen or any(c in chosen for c in "+#"):
        raise ValueError(
            f"dead-letter prefix {chosen!r} must be a topic without wildcards other than the telemetry prefix "
            f"{prefix!r} (the bridge would read its dead letters back). Fix: use e.g. {prefix}/{DEFAULT_SEGMENT}"
        )
    return chosen


def dead_letter_topic(dl_prefix: str, topic_prefix: str, topic: str) -> str:
    """``{dl_prefix}/{topic minus topic_prefix}``; a topic outside the prefix is kept whole."""
    prefix = topic_prefix.rstrip("/") + "/"
    rest = topic[len(prefix) :] if topic.startswith(prefix) else topic
    return f"{dl_prefix}/{rest}"


def dead_letter_payload(
    *,
    topic: str,
    payload: bytes,
    reason: str,
    kind: str,
    received_at_ns: int,
    bridge: str,
    max_bytes: int,
) -> bytes:
    """The JSON envelope of a dead letter (see the module docstring)."""
    kept = payload[:max_bytes]
    try:
        text, encoding = kept.decode("utf-8"), "utf-8"
    except UnicodeDecodeError:
        text, encoding = base64.b64encode(kept).decode("ascii"), "base64"
    received = datetime.fromtimestamp(received_at_ns / 1e9, UTC).isoformat(timespec="milliseconds")
    envelope = {
        "schema": DEAD_LETTER_SCHEMA,
        "topic": topic,
        "reason": reason,
        "kind": kind,
        "received_at": received.replace("+00:00", "Z"),
        "bridge": bridge,
        "size": len(payload),
        "truncated": len(kept) < len(payload),
        "encoding": encoding,
        "payload": text,
    }
    return json.dumps(envelope, ensure_ascii=False, separators=(",", ":")).encode()
