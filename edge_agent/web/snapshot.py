"""What the status page shows, as JSON-ready dicts built from the live objects.

Kept apart from the HTTP code so the page, ``/api/state`` and the live-update stream all show
the same thing. Nothing here waits or does I/O: building a snapshot reads attributes of the
pollers, the history and the delivery sinks (publisher, outbox), all owned by the event loop.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import math
import time
from collections.abc import Awaitable, Callable, Mapping, Sequence
from datetime import UTC, date, datetime
from enum import Enum
from typing import TYPE_CHECKING, Any, Protocol

from edge_agent import __version__
from edge_agent.core.connection import ConnectionState
from edge_agent.core.samples import Quality, Sample

if TYPE_CHECKING:
    from edge_agent.alerts.sink import AlertSink
    from edge_agent.delivery.output import DeliverySink
    from edge_agent.web.history import HistoryBuffer
    from edge_agent.web.view import AgentView, PollerView

log = logging.getLogger(__name__)

FaultInjector = Callable[[str, str], Awaitable[None]]
"""``await inject(machine, fault)``: start a simulated fault (demo only). Raises when it cannot."""

DEFAULT_FAULTS = ("bearing_wear", "imbalance", "misalignment", "overheating", "cavitation", "leak", "clogged_filter")
"""Offered for every machine when the demo gives no per-machine list (the injector rejects misfits)."""


class AlertsProvider(Protocol):
    """Where the page gets alerts from (the alert engine, or a test's stand-in).

    Alert dicts are shown as they are; the page uses ``id``/``alert_id``, ``machine``,
    ``title``/``summary``, ``severity``, ``since``, ``explanation`` and ``acknowledged`` when present.
    """

    def active(self) -> list[dict[str, Any]]:
        """Alerts open now, most important first."""
        ...

    def recent(self) -> list[dict[str, Any]]:
        """Alerts that ended or were acknowledged lately, newest first."""
        ...

    def acknowledge(self, machine: str, alert_id: str, by: str) -> bool | Awaitable[bool]:
        """Mark an active alert as seen by ``by``; False when there is no such active alert.

        May be a coroutine (the alert engine saves its state off the event loop before answering).
        """
        ...


def ns_to_ms(ns: int | None) -> int | None:
    """Nanoseconds since the epoch to the milliseconds JavaScript's ``Date`` takes."""
    return None if ns is None else ns // 1_000_000


def numeric_fields(stats: object) -> dict[str, float]:
    """The numeric fields of a stats object (a dataclass or a plain object), bools excluded."""
    if dataclasses.is_dataclass(stats) and not isinstance(stats, type):
        items = {f.name: getattr(stats, f.name) for f in dataclasses.fields(stats)}
    else:
        items = dict(getattr(stats, "__dict__", {}))
    return {
        name: float(value)
        for name, value in items.items()
        if isinstance(value, int | float) and not isinstance(value, bool) and not name.startswith("_")
    }


def delivery_sinks(agent: AgentView) -> list[DeliverySink]:
    """The sink that delivers data onwards (MQTT publisher or direct InfluxDB); none when the agent only polls."""
    return [] if agent.delivery is None else [agent.delivery]


def outbox_json(sink: DeliverySink, now_ns: int) -> dict[str, Any]:
    """The sink's durable outbox: what waits (entries, bytes, oldest age) and what was given up."""
    outbox = sink.outbox
    oldest = outbox.stats.oldest_created_ns
    return {
        "path": str(outbox.path) or None,
        "stats": numeric_fields(outbox.stats),
        "oldest_age_s": round((now_ns - oldest) / 1e9, 1) if oldest is not None else None,
    }


def replay_json(sink: DeliverySink) -> dict[str, Any] | None:
    """The sink's current (or last) backlog replay (``edge_agent.delivery.replay``): total, done, active, rate.

    None before the first replay.
    """
    return sink.replay.state()


def delivery_json(agent: AgentView, now_ns: int) -> list[dict[str, Any]]:
    """Broker / database / outbox state for the page: name, target, link, counters; never credentials."""
    return [
        {
            "name": sink.name,
            "target": sink.target,
            "connected": sink.connected,
            "stats": numeric_fields(sink.stats),
            "outbox": outbox_json(sink, now_ns),
            "replay": replay_json(sink),
        }
        for sink in delivery_sinks(agent)
    ]


def sample_json(sample: Sample, unit: str | None = None) -> dict[str, Any]:
    """One tag's newest reading; a non-finite number is shown as bad, as the payloads do."""
    value = sample.value
    quality, reason = str(sample.quality), sample.reason
    if isinstance(value, float) and not math.isfinite(value):
        value, quality, reason = None, str(Quality.BAD), f"value is not a finite number ({sample.value})"
    return {
        "tag": sample.tag,
        "value": value,
        "unit": sample.unit or unit,
        "quality": quality,
        "reason": reason,
        "t": ns_to_ms(sample.timestamp_ns),
    }


def configured_tags(poller: PollerView) -> list[tuple[str, str | None]]:
    """The machine's tags from its config (name, unit), in config order."""
    tags = getattr(poller.machine, "tags", None) or []
    return [(str(tag.name), getattr(tag, "unit", None)) for tag in tags]


def model_json(engine: AlertSink | None, machine: str) -> dict[str, Any] | None:
    """The machine's model for its card: learning (windows collected / needed) or ready (version, trained).

    ``state``: ``learning``, ``ready``, ``off`` (alerts disabled for the machine) or ``error`` (what
    waiting cannot mend; ``error`` says why and the fix). None when the agent runs no alert engine.
    ``windows`` and ``needed`` follow the trainer's own rule (``models.model.learning_progress``):
    learning starts when they are equal, and ``needed`` grows while too few windows are in one state.
    """
    if engine is None:
        return None
    config = engine.config
    stats = engine.stats(machine)
    windows, needed = engine.learning_progress(machine)
    if not config.enabled or not config.for_machine(machine).enabled:
        state = "off"
    elif stats.error is not None:
        state = "error"
    else:
        state = "ready" if stats.learned else "learning"
    return {
        "state": state,
        "windows": min(windows, needed),
        "needed": needed,
        "version": stats.model_version or None,
        "trained": _iso_to_ms(stats.trained_at),
        "retrains": stats.retrains,
        "pinned": stats.pinned,
        "error": stats.error,
    }


def _iso_to_ms(text: str | None) -> int | None:
    if not text:
        return None
    try:
        when = datetime.fromisoformat(text)
    except ValueError:
        return None
    if when.tzinfo is None:  # model headers are UTC
        when = when.replace(tzinfo=UTC)
    return int(when.timestamp() * 1000)


def machine_json(
    poller: PollerView, history: HistoryBuffer, requests: int | None, engine: AlertSink | None = None
) -> dict[str, Any]:
    """A machine card: link state with reason and since-when, poll figures, newest values."""
    stats = poller.stats
    machine = poller.machine
    reported = history.state(machine.id)
    since = reported.since_ns if reported is not None and reported.state == stats.state.value else None
    latest = history.latest(machine.id)
    tags = []
    seen = set()
    for name, unit in configured_tags(poller):
        seen.add(name)
        sample = latest.get(name)
        item: dict[str, Any] = {"tag": name, "value": None, "unit": unit}
        if sample is not None:
            item = sample_json(sample, unit)
        item["trend"] = history.has_series(machine.id, name)
        tags.append(item)
    for name, sample in latest.items():
        if name not in seen:
            tags.append(sample_json(sample) | {"trend": history.has_series(machine.id, name)})
    return {
        "id": machine.id,
        "description": machine.description,
        "protocol": str(getattr(machine, "type", "")),
        "interval_s": machine.interval,
        "state": stats.state.value,
        "reason": stats.last_error if stats.state is not ConnectionState.UP else None,
        "since": ns_to_ms(since),
        "last_poll": ns_to_ms(stats.last_poll_ns),
        "latency_ms": None if stats.last_latency_s is None else round(stats.last_latency_s * 1000, 1),
        "polls": stats.polls,
        "failures": stats.failures,
        "skipped_slots": stats.skipped_slots,
        "requests_per_cycle": requests,
        "model": model_json(engine, machine.id),
        "tags": tags,
    }


def alerts_json(alerts: AlertsProvider | None) -> dict[str, Any] | None:
    """Active and recent alerts, or the reason they cannot be shown (the page says so)."""
    if alerts is None:
        return None
    try:
        return {"active": list(alerts.active()), "recent": list(alerts.recent()), "error": None}
    except Exception as exc:
        log.exception("status page: the alerts provider failed")
        return {"active": [], "recent": [], "error": f"alerts unavailable: {type(exc).__name__}: {exc}"}


def state_json(
    agent: AgentView,
    history: HistoryBuffer,
    alerts: AlertsProvider | None,
    fault_choices: Mapping[str, Sequence[str]] | None,
    requests: Callable[[object], int | None],
) -> dict[str, Any]:
    """Everything the page shows, in one object (``/api/state`` and each live update)."""
    site = agent.config.site
    now_ns = time.time_ns()
    return {
        "now": ns_to_ms(now_ns),
        "agent": {"version": __version__, "site": site.name, "area": site.area, "line": site.line},
        "machines": [machine_json(p, history, requests(p.connector), agent.alerts) for p in agent.pollers],
        "delivery": delivery_json(agent, now_ns),
        "alerts": alerts_json(alerts),
        "inject": None if fault_choices is None else {m: list(f) for m, f in fault_choices.items()},
    }


def _default(value: object) -> object:
    if isinstance(value, datetime | date):
        return value.isoformat()
    if isinstance(value, Enum):
        return value.value
    if isinstance(value, set | frozenset | tuple):
        return list(value)
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return dataclasses.asdict(value)
    return str(value)


def _finite(value: object) -> object:
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {k: _finite(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_finite(v) for v in value]
    return value


def dumps(value: object) -> str:
    """Strict JSON (browsers reject NaN): opaque alert fields become strings, non-finite numbers null."""
    try:
        return json.dumps(value, allow_nan=False, default=_default, separators=(",", ":"))
    except ValueError:
        return json.dumps(_finite(json.loads(json.dumps(value, default=_default))), separators=(",", ":"))
