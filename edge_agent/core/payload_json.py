"""How an MQTT payload becomes JSON, in one place: bounded in size and strict about numbers.

Telemetry payloads and alert events arrive from the same broker and end up in the same database, so
they share one limit and one rule: NaN and infinity are not JSON, and a payload that carries them is
refused with the reason rather than written as a number InfluxDB cannot hold.
"""

from __future__ import annotations

import json
from typing import Any

from edge_agent.core.errors import PayloadError

MAX_PAYLOAD_BYTES = 4 * 1024 * 1024


def load_json(payload: bytes) -> Any:
    """The JSON value in ``payload``; ``PayloadError`` says why when it is too large or not valid JSON."""
    if len(payload) > MAX_PAYLOAD_BYTES:
        raise PayloadError(f"payload of {len(payload)} bytes exceeds the {MAX_PAYLOAD_BYTES}-byte limit")
    try:
        return json.loads(payload, parse_constant=_reject_constant)
    except ValueError as exc:  # JSONDecodeError, UnicodeDecodeError, an integer of over 4300 digits
        raise PayloadError(f"not valid JSON: {exc}") from exc


def _reject_constant(name: str) -> Any:
    raise PayloadError(f"{name} is not allowed in a payload: values must be finite numbers")
