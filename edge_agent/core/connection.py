"""``ConnectionState``: the state of one machine's link, as connectors report it and views show it."""

from __future__ import annotations

from enum import StrEnum


class ConnectionState(StrEnum):
    """What the status page, logs and metrics say about a machine's link."""

    CONNECTING = "connecting"
    UP = "up"
    DOWN = "down"
    CLOSED = "closed"
