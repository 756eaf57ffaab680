"""``AlertBoard``: the page's view of the alert engine, built from the alert events it emits.

The alert sink (``edge_agent/alerts``) tells the world about alerts as events (schema 1:
``event`` = raised / escalated / acknowledged / cleared, with ``alert_id``, ``machine``,
``severity``, ``since``, ``summary``, ``signals``, ``hint``, ``acknowledged_by``...), which the
runtime publishes on the retained MQTT alerts topic. The board records the same events, so the
page shows exactly what went out: the newest event of each open alert (one per machine), and
the alerts that ended lately. It implements the page's ``AlertsProvider`` protocol;
acknowledging calls the engine (which then emits an ``acknowledged`` event that updates the
board).

Bounded: one open alert per machine and ``recent_size`` ended ones.
"""

from __future__ import annotations

import collections
import logging
from collections import deque
from collections.abc import Awaitable, Callable, Mapping
from typing import Any

log = logging.getLogger(__name__)

SEVERITY_RANK = {"critical": 0, "alarm": 1, "warning": 2}

Acknowledge = Callable[[str, str], Awaitable[bool]]
"""``await acknowledge(machine, by)``: the engine's acknowledge; False when nothing is open."""


class AlertBoard:
    """Open and recent alerts from the engine's events; acknowledges through the engine."""

    def __init__(self, acknowledge: Acknowledge | None = None, recent_size: int = 50) -> None:
        self.engine_acknowledge = acknowledge
        """The engine's acknowledge; may be set after construction (the engine needs ``record`` first)."""
        self._open: dict[str, dict[str, Any]] = {}
        self._recent: deque[dict[str, Any]] = deque(maxlen=recent_size)
        self.ignored_events = 0
        self.event_counts: collections.Counter[tuple[str, str]] = collections.Counter()
        """Events seen per (machine, kind), for /metrics: how often alerts were raised, cleared, ..."""

    def record(self, event: Mapping[str, Any]) -> None:
        """Take one alert event (call it from the alert sink's ``on_alert`` callback, on the loop)."""
        machine, kind = event.get("machine"), event.get("event")
        if not isinstance(machine, str) or kind not in ("raised", "escalated", "acknowledged", "cleared"):
            self.ignored_events += 1
            log.debug("alert board: ignoring an event without machine or known kind: %r", event)
            return
        self.event_counts[machine, str(kind)] += 1
        if kind == "cleared" or event.get("active") is False:
            opened = self._open.pop(machine, None)
            ended = dict(opened or {}) | dict(event)
            ended["ended"] = event.get("at")
            self._recent.appendleft(ended)
            return
        self._open[machine] = dict(event)

    def active(self) -> list[dict[str, Any]]:
        """Open alerts, most severe first, then the oldest first."""
        return sorted(
            self._open.values(),
            key=lambda a: (SEVERITY_RANK.get(str(a.get("severity")), len(SEVERITY_RANK)), str(a.get("since"))),
        )

    def recent(self) -> list[dict[str, Any]]:
        """Alerts that ended, newest first."""
        return list(self._recent)

    async def acknowledge(self, machine: str, alert_id: str, by: str) -> bool:
        """Acknowledge the machine's open alert if it is ``alert_id`` and not acknowledged yet."""
        alert = self._open.get(machine)
        if alert is None or str(alert.get("alert_id")) != alert_id or alert.get("acknowledged"):
            return False
        if self.engine_acknowledge is None:
            return False
        return await self.engine_acknowledge(machine, by)
