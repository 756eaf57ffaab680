"""What the status page reads of the running agent, declared here so the page needs no runtime import.

The page sits below the runtime in the layers (the runtime composes the ``web:`` section into the
agent's config and starts the page), so it cannot import ``Agent`` or ``MachinePoller``. It names
instead the few things it reads; the runtime's classes have them, and mypy checks that they still
do wherever an ``Agent`` is handed to the page.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Protocol

if TYPE_CHECKING:
    from connectors import MachineConfig
    from connectors.base import Connector
    from edge_agent.alerts.sink import AlertSink
    from edge_agent.core.connection import ConnectionState
    from edge_agent.delivery.output import DeliverySink

__all__ = ["AgentView", "PollStatsView", "PollerView", "SiteView"]


class PollStatsView(Protocol):
    """One machine's poll figures, as its poller keeps them."""

    @property
    def state(self) -> ConnectionState: ...
    @property
    def polls(self) -> int: ...
    @property
    def failures(self) -> int: ...
    @property
    def skipped_slots(self) -> int: ...
    @property
    def last_poll_ns(self) -> int | None: ...
    @property
    def last_latency_s(self) -> float | None: ...
    @property
    def last_error(self) -> str | None: ...
    @property
    def latencies(self) -> list[float]: ...


class PollerView(Protocol):
    """One machine's poller: its config, its figures and its connector."""

    @property
    def machine(self) -> MachineConfig: ...
    @property
    def stats(self) -> PollStatsView: ...
    @property
    def connector(self) -> Connector: ...


class SiteView(Protocol):
    """Where the agent sits in the plant."""

    @property
    def name(self) -> str: ...
    @property
    def area(self) -> str: ...
    @property
    def line(self) -> str: ...


class _ConfigView(Protocol):
    @property
    def site(self) -> SiteView: ...


class AgentView(Protocol):
    """The running agent as the page sees it: machines, delivery sink and alert engine."""

    @property
    def config(self) -> _ConfigView: ...
    @property
    def pollers(self) -> Sequence[PollerView]: ...
    @property
    def delivery(self) -> DeliverySink | None: ...
    @property
    def alerts(self) -> AlertSink | None: ...
