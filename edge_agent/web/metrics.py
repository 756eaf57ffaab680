"""``/metrics``: Prometheus text format read from the live objects at scrape time.

A custom collector on a registry of the server's own (never the global default registry), so
nothing is counted twice, nothing leaks between two agents in one process (tests), and the
numbers are exactly what the pollers and the publisher hold: no second set of counters to keep
in step. Collection runs on the event loop because the objects it reads belong to it; it only
reads attributes and, for the process metrics, two small files under ``/proc`` (memory-backed,
they never wait on a disk).
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import TYPE_CHECKING

from prometheus_client import CollectorRegistry, ProcessCollector, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from connectors.base import ConnectionState
from edge_agent.web.snapshot import publisher_counters

if TYPE_CHECKING:
    from edge_agent.history import HistoryBuffer
    from edge_agent.runtime import Agent
    from edge_agent.web.snapshot import AlertsProvider

CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"

_PUBLISHER_COUNTERS = {
    "published": ("edge_agent_published_batches", "Batches handed to the broker (or the outbox)."),
    "dropped": ("edge_agent_dropped_batches", "Batches dropped because the queue or outbox was full."),
    "connects": ("edge_agent_broker_connects", "Successful broker connections (1 + reconnects)."),
}


class AgentCollector(Collector):
    """Reads pollers, connectors, the publisher, the history and the alerts at every scrape."""

    def __init__(self, agent: Agent, history: HistoryBuffer, alerts: AlertsProvider | None = None) -> None:
        self.agent = agent
        self.history = history
        self.alerts = alerts
        self.sse_clients = 0

    def collect(self) -> Iterator[Metric]:
        """One family per quantity, one sample per machine."""
        yield from self._machines()
        yield from self._publisher()
        history = GaugeMetricFamily("edge_agent_history_series", "Tag series kept for the status page's trends.")
        history.add_metric([], self.history.series_count)
        yield history
        memory = GaugeMetricFamily("edge_agent_history_bytes", "Bytes held by the trend ring buffers.")
        memory.add_metric([], self.history.memory_bytes)
        yield memory
        clients = GaugeMetricFamily("edge_agent_web_event_streams", "Open status-page live-update streams.")
        clients.add_metric([], self.sse_clients)
        yield clients
        if self.alerts is not None:
            active = GaugeMetricFamily("edge_agent_alerts_active", "Alerts active now.")
            active.add_metric([], len(self.alerts.active()))
            yield active

    def _machines(self) -> Iterator[Metric]:
        label = ["machine"]
        polls = CounterMetricFamily("edge_agent_polls", "Successful polls.", labels=label)
        failures = CounterMetricFamily("edge_agent_poll_failures", "Failed connects or polls.", labels=label)
        skipped = CounterMetricFamily(
            "edge_agent_poll_skipped_slots", "Poll slots skipped after an overrun.", labels=label
        )
        latency = GaugeMetricFamily("edge_agent_poll_latency_seconds", "Duration of the last poll.", labels=label)
        up = GaugeMetricFamily("edge_agent_machine_up", "1 while the machine's link is up, else 0.", labels=label)
        last = GaugeMetricFamily(
            "edge_agent_last_poll_timestamp_seconds", "Unix time of the last successful poll.", labels=label
        )
        requests = GaugeMetricFamily(
            "edge_agent_requests_per_cycle",
            "Protocol requests one poll sends (Modbus reads, OPC UA Read calls).",
            labels=label,
        )
        for poller in self.agent.pollers:
            machine = [poller.machine.id]
            stats = poller.stats
            polls.add_metric(machine, stats.polls)
            failures.add_metric(machine, stats.failures)
            skipped.add_metric(machine, stats.skipped_slots)
            up.add_metric(machine, 1.0 if stats.state is ConnectionState.UP else 0.0)
            if stats.last_latency_s is not None:
                latency.add_metric(machine, stats.last_latency_s)
            if stats.last_poll_ns is not None:
                last.add_metric(machine, stats.last_poll_ns / 1e9)
            per_cycle = requests_per_cycle(poller.connector)
            if per_cycle is not None:
                requests.add_metric(machine, per_cycle)
        yield from (polls, failures, skipped, latency, up, last, requests)

    def _publisher(self) -> Iterator[Metric]:
        publisher = self.agent.publisher
        if publisher is None:
            return
        counters = publisher_counters(publisher)
        for field, (name, doc) in _PUBLISHER_COUNTERS.items():
            if field in counters:
                family = CounterMetricFamily(name, doc)
                family.add_metric([], counters[field])
                yield family
        connected = getattr(publisher, "connected", None)
        if isinstance(connected, bool):
            gauge = GaugeMetricFamily("edge_agent_broker_connected", "1 while the broker session is up.")
            gauge.add_metric([], 1.0 if connected else 0.0)
            yield gauge
        others = {k: v for k, v in counters.items() if k not in _PUBLISHER_COUNTERS}
        for field, value in sorted(others.items()):
            other = GaugeMetricFamily(f"edge_agent_publisher_{field}", f"Publisher statistic {field!r}.")
            other.add_metric([], value)
            yield other


def requests_per_cycle(connector: object) -> int | None:
    """Requests per poll if the connector says (Modbus ``requests_per_cycle``, OPC UA ``reads_per_cycle``)."""
    for attribute in ("requests_per_cycle", "reads_per_cycle"):
        try:
            value = getattr(connector, attribute, None)
        except Exception:  # noqa: BLE001 - a property of a closed connector may fail; the metric is optional
            return None
        if isinstance(value, int) and not isinstance(value, bool):
            return value
    return None


class Metrics:
    """The server's registry: the agent collector plus the process collector (RSS, CPU, open files)."""

    def __init__(self, collector: AgentCollector) -> None:
        self.collector = collector
        self.registry = CollectorRegistry(auto_describe=False)
        self.registry.register(collector)
        ProcessCollector(namespace="", registry=self.registry)

    def render(self) -> bytes:
        """The exposition text of every metric."""
        return generate_latest(self.registry)


__all__ = ["CONTENT_TYPE", "AgentCollector", "Metrics", "requests_per_cycle"]
