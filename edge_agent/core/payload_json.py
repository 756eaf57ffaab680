"""How an MQTT payload becomes JSON, in one place: bounded in size and depth, strict about numbers.

Telemetry payloads and alert events arrive from the same broker and end up in the same database, so
they share one limit and one rule: NaN and infinity are not JSON, and a payload that carries them is
refused with the reason rather than written as a number InfluxDB cannot hold. Nesting is bounded
too: the decoder recurses once per level, and a payload of a few thousand ``[`` would otherwise
raise ``RecursionError`` instead of a reason.
"""

from __future__ import annotations

import json
import re
from typing import Any

from edge_agent.core.errors import PayloadError

__all__ = ["MAX_JSON_DEPTH", "MAX_PAYLOAD_BYTES", "check_depth", "load_json"]

MAX_PAYLOAD_BYTES = 4 * 1024 * 1024
MAX_JSON_DEPTH = 64
"""Levels of arrays and objects; every payload the agent sends has at most four."""

_STRING = re.compile(rb'"(?:[^"\\]|\\.)*"', re.DOTALL)
_NOT_BRACKETS = bytes(byte for byte in range(256) if byte not in b"[]{}")
_SQUARE = bytes.maketrans(b"{}", b"[]")


def load_json(payload: bytes) -> Any:
    """The JSON value in ``payload``; ``PayloadError`` says why when it is too large, too deep or not valid JSON."""
    if len(payload) > MAX_PAYLOAD_BYTES:
        raise PayloadError(f"payload of {len(payload)} bytes exceeds the {MAX_PAYLOAD_BYTES}-byte limit")
    check_depth(payload)
    try:
        return json.loads(payload, parse_constant=_reject_constant)
    except ValueError as exc:  # JSONDecodeError, UnicodeDecodeError, an integer of over 4300 digits
        raise PayloadError(f"not valid JSON: {exc}") from exc
    except RecursionError:  # a backstop: check_depth counts what the decoder would recurse into
        raise PayloadError(f"not valid JSON: nested more than {MAX_JSON_DEPTH} levels deep") from None


def check_depth(payload: bytes) -> None:
    """``PayloadError`` if arrays and objects nest deeper than ``MAX_JSON_DEPTH`` (brackets in strings do not count).

    Cheap for what the agent sends, as the bridge checks every message: few brackets cannot nest
    deep; else the brackets alone are reduced by removing innermost pairs, one level per pass, in C.
    Only when that does not settle it (brackets inside strings, unbalanced ones) is it counted byte by byte.
    """
    if payload.count(b"[") + payload.count(b"{") <= MAX_JSON_DEPTH:
        return
    brackets = payload.translate(_SQUARE, _NOT_BRACKETS)
    for _ in range(MAX_JSON_DEPTH):
        reduced = brackets.replace(b"[]", b"")
        if not reduced:
            return
        if reduced == brackets:
            break
        brackets = reduced
    depth = 0
    for byte in _STRING.sub(b"", payload).translate(None, _NOT_BRACKETS):
        if byte in b"[{":
            depth += 1
            if depth > MAX_JSON_DEPTH:
                raise PayloadError(f"not valid JSON: nested more than {MAX_JSON_DEPTH} levels deep")
        else:
            depth -= 1


def _reject_constant(name: str) -> Any:
    raise PayloadError(f"{name} is not allowed in a payload: values must be finite numbers")
