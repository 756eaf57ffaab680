"""Predictive-maintenance alerts in the agent: the ``alerts:`` config section and ``AlertSink``.

The models themselves (features, detectors, alert state machine) are in the top-level
``models`` package, which does no I/O beyond its model files; this package wires them to the
agent's batches, its data directory and the alert topic.
"""

from __future__ import annotations

from edge_agent.alerts.config import AlertsConfig, MachineAlertsConfig, StateSignalConfig
from edge_agent.alerts.sink import EVENT_SCHEMA, AlertCallback, AlertSink, MachineStats

__all__ = [
    "EVENT_SCHEMA",
    "AlertCallback",
    "AlertSink",
    "AlertsConfig",
    "MachineAlertsConfig",
    "MachineStats",
    "StateSignalConfig",
]
