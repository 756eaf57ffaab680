"""Predictive-maintenance alerts in the agent: the ``alerts:`` config section, ``AlertSink``,
the typed alert events and scores with their codecs, and the board the page shows.

The models themselves (features, detectors, alert state machine) are in the top-level
``models`` package, which does no I/O beyond its model files; this package wires them to the
agent's batches, its data directory and the alert topic. Import the modules themselves
(``edge_agent.alerts.sink``, ``.config``, ``.events``): importing the package loads nothing,
so an agent without alerts never pays for numpy.
"""
