"""Log output in the format that suits where the agent runs.

- On a terminal: human lines, the level coloured (``NO_COLOR`` or ``TERM=dumb`` switches colour off).
- Piped or redirected: the same lines without colour.
- Under systemd (``JOURNAL_STREAM`` or ``INVOCATION_ID`` set) or when asked (``json_format=True``, or
  ``EDGE_AGENT_LOG_FORMAT=json``, e.g. in a container whose logs go to Loki): JSON lines, one object
  per record with ``time``, ``level``, ``logger``, ``message``, ``exception`` when there is one,
  and every ``extra=`` field of the call, so ``journalctl -u edge-agent -o cat | jq`` works.

Nothing here adds data to a record: what is logged is what the code passes, and the code never
passes secrets.
"""

from __future__ import annotations

import json
import logging
import os
import sys
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any, Literal, TextIO, get_args

__all__ = ["ColourFormatter", "JsonFormatter", "choose_format", "setup_logging"]

PLAIN_FORMAT = "%(asctime)s %(levelname)-7s %(name)s: %(message)s"

# Libraries whose warnings are about their own internals (session timeouts granted, the
# simulator's lack of encryption); the agent reports what matters in its own words.
NOISY_LOGGERS = ("asyncua", "pymodbus", "aiohttp")

# Attributes every LogRecord has; anything else on a record came from ``extra=``.
_RECORD_ATTRS = frozenset(logging.LogRecord("", 0, "", 0, "", None, None).__dict__) | {"message", "asctime"}

_COLOURS = {
    logging.DEBUG: "\x1b[2m",  # dim
    logging.INFO: "\x1b[32m",  # green
    logging.WARNING: "\x1b[33m",  # yellow
    logging.ERROR: "\x1b[31m",  # red
    logging.CRITICAL: "\x1b[1;31m",  # bold red
}
_RESET = "\x1b[0m"

Format = Literal["json", "colour", "plain"]

# Overrides the automatic choice when set to one of the formats (json_format= still wins).
FORMAT_VARIABLE = "EDGE_AGENT_LOG_FORMAT"


class JsonFormatter(logging.Formatter):
    """One JSON object per record: time (ISO 8601 UTC), level, logger, message, extra fields."""

    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, Any] = {
            "time": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
        }
        for key, value in record.__dict__.items():
            if key not in _RECORD_ATTRS and not key.startswith("_") and key not in entry:
                entry[key] = value
        if record.exc_info:
            entry["exception"] = self.formatException(record.exc_info)
        elif record.exc_text:
            entry["exception"] = record.exc_text
        if record.stack_info:
            entry["stack"] = self.formatStack(record.stack_info)
        return json.dumps(entry, default=str, ensure_ascii=False)


class ColourFormatter(logging.Formatter):
    """The plain line with the level name coloured, for a terminal."""

    def __init__(self) -> None:
        super().__init__(PLAIN_FORMAT)

    def formatMessage(self, record: logging.LogRecord) -> str:  # noqa: N802 (logging's name)
        colour = _COLOURS.get(record.levelno, "")
        original = record.levelname
        record.levelname = f"{colour}{original:<7}{_RESET}" if colour else original
        try:
            return super().formatMessage(record)
        finally:
            record.levelname = original


def under_systemd(environ: Mapping[str, str] | None = None) -> bool:
    """True when systemd started this process (its stdout/stderr go to the journal)."""
    env = os.environ if environ is None else environ
    return bool(env.get("JOURNAL_STREAM") or env.get("INVOCATION_ID"))


def choose_format(
    stream: TextIO, *, json_format: bool | None = None, environ: Mapping[str, str] | None = None
) -> Format:
    """``json`` when asked or under systemd, ``colour`` on a terminal, else ``plain``."""
    env = os.environ if environ is None else environ
    if json_format is True:
        return "json"
    if json_format is None:
        wanted = env.get(FORMAT_VARIABLE, "").strip().lower().replace("color", "colour")
        if wanted in get_args(Format):
            return wanted  # type: ignore[return-value]
        if under_systemd(env):
            return "json"
    if env.get("NO_COLOR") or env.get("TERM") == "dumb":
        return "plain"
    isatty = getattr(stream, "isatty", None)
    try:
        return "colour" if isatty is not None and isatty() else "plain"
    except ValueError:  # a closed stream
        return "plain"


def setup_logging(level: str = "INFO", *, json_format: bool | None = None, stream: TextIO | None = None) -> Format:
    """Configure the root logger for ``level`` and return the chosen format.

    ``json_format``: True forces JSON lines, False forces human lines, None (the default) picks
    JSON under systemd and human lines elsewhere. ``stream`` defaults to standard error.
    """
    out = sys.stderr if stream is None else stream
    chosen = choose_format(out, json_format=json_format)
    handler = logging.StreamHandler(out)
    if chosen == "json":
        handler.setFormatter(JsonFormatter())
    elif chosen == "colour":
        handler.setFormatter(ColourFormatter())
    else:
        handler.setFormatter(logging.Formatter(PLAIN_FORMAT))
    logging.basicConfig(level=getattr(logging, level.upper()), handlers=[handler], force=True)
    for noisy in NOISY_LOGGERS:
        logging.getLogger(noisy).setLevel(logging.ERROR if level.upper() != "DEBUG" else logging.INFO)
    return chosen
