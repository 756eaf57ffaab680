"""Reading what a request sends (query numbers, JSON bodies) so that nothing it sends is a 500.

The API promises a 4xx with a short reason for every bad request. A number in the query must
be finite and is clamped to what the page can answer (``?seconds=1e308`` would otherwise
overflow when turned into nanoseconds); a JSON body must arrive within the request timeout,
be a flat object and nest no deeper than ``MAX_DEPTH`` (the parser recurses, and a few
thousand ``[`` end in a ``RecursionError``, which is no ``ValueError``).
"""

from __future__ import annotations

import asyncio
import json
import math
from collections.abc import Mapping
from typing import Any

from aiohttp import web

MAX_NAME = 200
MAX_DEPTH = 16


class RequestError(Exception):
    """A request the server cannot serve; becomes ``{"error": message}`` with ``status`` (and ``headers``)."""

    def __init__(self, status: int, message: str, headers: Mapping[str, str] | None = None) -> None:
        super().__init__(message)
        self.status = status
        self.headers = dict(headers or {})


def seconds_param(request: web.Request, longest: float) -> float | None:
    """``?seconds=N``: a positive finite number, at most ``longest``; None when absent."""
    raw = request.query.get("seconds")
    if raw is None:
        return None
    try:
        seconds = float(raw[:MAX_NAME])
    except ValueError:
        seconds = math.nan
    if not math.isfinite(seconds) or seconds <= 0:
        raise RequestError(400, f"seconds must be a positive number, got {raw[:MAX_NAME]!r}")
    return min(seconds, longest)


def nesting_depth(text: str) -> int:
    """How deep ``[`` and ``{`` nest in a JSON text, strings skipped (no recursion, one pass)."""
    depth = deepest = 0
    in_string = escaped = False
    for char in text:
        if in_string:
            if escaped:
                escaped = False
            elif char == "\\":
                escaped = True
            elif char == '"':
                in_string = False
        elif char == '"':
            in_string = True
        elif char in "[{":
            depth += 1
            deepest = max(deepest, depth)
        elif char in "]}":
            depth -= 1
    return deepest


async def json_object(request: web.Request, within: float, allow_empty: bool = False) -> dict[str, Any]:
    """The body as a JSON object, read within ``within`` s; ``RequestError`` (400, 408) with the reason otherwise."""
    if allow_empty and not request.can_read_body:
        return {}
    try:
        async with asyncio.timeout(within):
            text = await request.text()
    except TimeoutError as exc:
        raise RequestError(408, f"the body did not arrive within {within:g} s") from exc
    except UnicodeDecodeError as exc:
        raise RequestError(400, "the body is not valid UTF-8") from exc
    if not text.strip() and allow_empty:
        return {}
    if nesting_depth(text) > MAX_DEPTH:
        raise RequestError(400, f"the body nests deeper than {MAX_DEPTH} levels")
    try:
        body = json.loads(text)
    except (ValueError, RecursionError) as exc:
        reason = str(exc) if isinstance(exc, ValueError) else "nested too deeply"
        raise RequestError(400, f"the body is not valid JSON: {reason[:MAX_NAME]}") from exc
    if body is None and allow_empty:
        return {}
    if not isinstance(body, dict):
        raise RequestError(400, "the body must be a JSON object")
    return body
