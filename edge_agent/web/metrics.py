"""``/metrics``: Prometheus text format read from the live objects at scrape time.

A custom collector on a registry of the server's own (never the global default registry), so
nothing is counted twice, nothing leaks between two agents in one process (tests), and the
numbers are exactly what the pollers, the publisher and the outbox hold: no second set of counters to keep
in step. Collection runs on the event loop because the objects it reads belong to it; it only
reads attributes and, for the process metrics, two small files under ``/proc`` (memory-backed,
they never wait on a disk).
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from typing import TYPE_CHECKING, Any

from prometheus_client import CollectorRegistry, ProcessCollector, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from edge_agent.core.connection import ConnectionState
from edge_agent.web.snapshot import delivery_sinks, numeric_fields, outbox_json, replay_json

if TYPE_CHECKING:
    from edge_agent.web.history import HistoryBuffer
    from edge_agent.web.snapshot import AlertsProvider
    from edge_agent.web.view import AgentView

CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"

_OUTBOX_GAUGES = {
    "entries": "Batches waiting in the outbox.",
    "bytes": "Payload bytes waiting in the outbox.",
    "samples": "Samples waiting in the outbox.",
}


class AgentCollector(Collector):
    """Reads pollers, connectors, the delivery sinks, the history and the alerts at every scrape."""

    def __init__(self, agent: AgentView, history: HistoryBuffer, alerts: AlertsProvider | None = None) -> None:
        self.agent = agent
        self.history = history
        self.alerts = alerts
        self.sse_clients = 0
        self.rejected_logins: Callable[[], int] = lambda: 0

    def collect(self) -> Iterator[Metric]:
        """One family per quantity, one sample per machine."""
        yield from self._machines()
        yield from self._delivery()
        history = GaugeMetricFamily("edge_agent_history_series", "Tag series kept for the status page's trends.")
        history.add_metric([], self.history.series_count)
        yield history
        memory = GaugeMetricFamily("edge_agent_history_bytes", "Bytes held by the trend ring buffers.")
        memory.add_metric([], self.history.memory_bytes)
        yield memory
        rejected = CounterMetricFamily("edge_agent_web_rejected_logins", "Requests with a wrong credential.")
        rejected.add_metric([], self.rejected_logins())
        yield rejected
        clients = GaugeMetricFamily("edge_agent_web_event_streams", "Open status-page live-update streams.")
        clients.add_metric([], self.sse_clients)
        yield clients
        if self.alerts is not None:
            active = GaugeMetricFamily("edge_agent_alerts_active", "Alerts active now.")
            active.add_metric([], len(self.alerts.active()))
            yield active
            counts = getattr(self.alerts, "event_counts", None)
            if counts is not None:
                events = CounterMetricFamily(
                    "edge_agent_alert_events",
                    "Alert events per machine and kind (raised, escalated, acknowledged, cleared).",
                    labels=["machine", "event"],
                )
                for (machine, kind), count in sorted(counts.items()):
                    events.add_metric([machine, kind], count)
                yield events
        yield from self._models()

    def _models(self) -> Iterator[Metric]:
        """Per machine with an alert engine: is the model ready, and its latest score against the threshold."""
        engine = self.agent.alerts
        if engine is None:
            return
        label = ["machine"]
        ready = GaugeMetricFamily("edge_agent_model_ready", "1 once the machine's model has learned.", labels=label)
        learning = GaugeMetricFamily(
            "edge_agent_model_learning_windows", "Windows collected to learn the machine's normal.", labels=label
        )
        needed = GaugeMetricFamily(
            "edge_agent_model_learning_windows_needed",
            "Windows learning needs (grows while too few are in one learned state); learning starts at this.",
            labels=label,
        )
        scored = CounterMetricFamily("edge_agent_model_windows_scored", "Windows scored by the model.", labels=label)
        score = GaugeMetricFamily("edge_agent_anomaly_score", "Anomaly score of the latest window.", labels=label)
        threshold = GaugeMetricFamily("edge_agent_anomaly_threshold", "The model's alert threshold.", labels=label)
        level = GaugeMetricFamily(
            "edge_agent_anomaly_level", "Latest window on the alert scale: 0 typical, 1 the threshold.", labels=label
        )
        for poller in self.agent.pollers:
            machine = [poller.machine.id]
            stats = engine.stats(poller.machine.id)
            ready.add_metric(machine, 1.0 if stats.learned else 0.0)
            have, need = engine.learning_progress(poller.machine.id)
            learning.add_metric(machine, min(have, need))
            needed.add_metric(machine, need)
            scored.add_metric(machine, stats.scored)
            latest = engine.last_assessment(poller.machine.id)
            if latest is not None:
                score.add_metric(machine, latest.score)
                threshold.add_metric(machine, latest.threshold)
                level.add_metric(machine, latest.level)
        yield from (ready, learning, needed, scored, score, threshold, level)

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

    def _delivery(self) -> Iterator[Metric]:
        """Every numeric field of each delivery sink's ``stats`` and of its outbox's ``stats``.

        The sinks' counters are defined by their own modules (publisher, outbox, InfluxDB sink);
        exporting each field under a name derived from it keeps this page in step with them.
        """
        label = ["sink"]
        connected = GaugeMetricFamily("edge_agent_delivery_connected", "1 while the sink's link is up.", labels=label)
        families: dict[str, CounterMetricFamily | GaugeMetricFamily] = {}

        def family(name: str, doc: str, kind: type[CounterMetricFamily | GaugeMetricFamily]) -> Any:
            if name not in families:
                families[name] = kind(name, doc, labels=label)
            return families[name]

        replaying = GaugeMetricFamily(
            "edge_agent_backlog_replay_active", "1 while a backlog replay is under way, else 0.", labels=label
        )
        replay_total = GaugeMetricFamily(
            "edge_agent_backlog_replay_total_entries",
            "Entries that waited when the current (or last) backlog replay began.",
            labels=label,
        )
        replay_done = GaugeMetricFamily(
            "edge_agent_backlog_replay_done_entries",
            "Entries of the current (or last) backlog replay delivered so far (progress = done / total).",
            labels=label,
        )
        now_ns = time.time_ns()
        for sink in delivery_sinks(self.agent):
            name = [sink.name]
            if sink.connected is not None:
                connected.add_metric(name, 1.0 if sink.connected else 0.0)
            replay = replay_json(sink)
            replaying.add_metric(name, 1.0 if replay is not None and replay["active"] else 0.0)
            replay_total.add_metric(name, replay["total"] if replay is not None else 0.0)
            replay_done.add_metric(name, replay["done"] if replay is not None else 0.0)
            for field, value in numeric_fields(sink.stats).items():
                doc = f"Delivery counter {field!r} of the sink (see its module)."
                family(f"edge_agent_delivery_{field}", doc, CounterMetricFamily).add_metric(name, value)
            outbox = outbox_json(sink, now_ns)
            for field, value in outbox["stats"].items():
                if field == "oldest_created_ns":
                    continue
                if field in _OUTBOX_GAUGES:
                    kind: type[CounterMetricFamily | GaugeMetricFamily] = GaugeMetricFamily
                    metric, doc = f"edge_agent_outbox_{field}", _OUTBOX_GAUGES[field]
                else:
                    kind, metric, doc = CounterMetricFamily, f"edge_agent_outbox_{field}", f"Outbox counter {field!r}."
                family(metric, doc, kind).add_metric(name, value)
            if outbox["oldest_age_s"] is not None:
                age = family(
                    "edge_agent_outbox_oldest_age_seconds", "Age of the oldest waiting batch.", GaugeMetricFamily
                )
                age.add_metric(name, outbox["oldest_age_s"])
        yield connected
        yield from (replaying, replay_total, replay_done)
        yield from families.values()


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
