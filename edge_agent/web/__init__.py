"""The status page: machines, live values with trends, broker state, alerts, and ``/metrics``.

``StatusServer`` serves it from a running ``Agent`` and a ``HistoryBuffer`` sink; ``WebConfig``
is the ``web:`` config section. See docs/status-page.md.
"""

from edge_agent.web.config import WebConfig, is_loopback
from edge_agent.web.server import StatusServer
from edge_agent.web.snapshot import AlertsProvider, FaultInjector

__all__ = ["AlertsProvider", "FaultInjector", "StatusServer", "WebConfig", "is_loopback"]
