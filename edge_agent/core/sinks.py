"""Where batches go after a poll. The poller hands every batch to each sink in turn.

A sink's ``submit`` must return quickly (enqueue, not network I/O): a slow broker must never
delay the next poll of a machine.
"""

from __future__ import annotations

from typing import Protocol

from edge_agent.core.origin import Origin
from edge_agent.core.samples import Batch


class Sink(Protocol):
    """A destination for batches: MQTT publisher or InfluxDB sink (both via the outbox), alerts, history, terminal."""

    name: str

    async def start(self) -> None:
        """Prepare (connect in the background). Must not fail because a server is down."""
        ...

    async def submit(self, batch: Batch, origin: Origin) -> None:
        """Accept one poll's batch. Returns quickly; never raises for a down destination."""
        ...

    def machine_state_changed(self, origin: Origin, state: str, reason: str | None) -> None:
        """A machine went up or down; sinks that report status publish it."""
        ...

    async def close(self) -> None:
        """Flush what can be flushed within a short time and release resources. Idempotent."""
        ...
