"""The status page: machines, live values with trends, broker state, alerts, and ``/metrics``.

``StatusServer`` serves it from a running ``Agent`` and a ``HistoryBuffer`` sink; ``WebConfig``
is the ``web:`` config section. See docs/status-page.md.

The server (and with it aiohttp and prometheus-client, a sizeable share of the RSS budget: see
docs/models.md, Footprint) is imported only when it is used: an agent without a ``web:``
section must not pay for it on a small box.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from edge_agent.web.config import WebConfig, is_loopback

if TYPE_CHECKING:
    from edge_agent.web.server import StatusServer
    from edge_agent.web.snapshot import AlertsProvider, FaultInjector

__all__ = ["AlertsProvider", "FaultInjector", "StatusServer", "WebConfig", "is_loopback"]


def __getattr__(name: str) -> Any:
    if name == "StatusServer":
        from edge_agent.web.server import StatusServer

        return StatusServer
    if name in ("AlertsProvider", "FaultInjector"):
        from edge_agent.web import snapshot

        return getattr(snapshot, name)
    raise AttributeError(f"module 'edge_agent.web' has no attribute {name!r}")
