"""One supervised poll loop per machine: connect, poll on a fixed grid, reconnect with backoff.

The grid is anchored at the first poll (``t0 + k * interval``), so polls do not drift. When a
poll overruns, the missed slots are skipped and counted rather than run back to back, so a slow
device never causes a pile-up. State changes are logged once (down / recovered), not per poll.
"""

from __future__ import annotations

import asyncio
import logging
import math
import time
from collections.abc import Sequence
from dataclasses import dataclass, field

from connectors import MachineConfig
from connectors.base import Connector
from edge_agent.core.backoff import Backoff
from edge_agent.core.connection import ConnectionState
from edge_agent.core.errors import ConnectorError, ReadTimeout
from edge_agent.core.origin import Origin
from edge_agent.core.samples import Batch
from edge_agent.core.sinks import Sink

log = logging.getLogger(__name__)


@dataclass
class PollStats:
    """What the status page and metrics show about one machine."""

    state: ConnectionState = ConnectionState.CONNECTING
    polls: int = 0
    failures: int = 0
    skipped_slots: int = 0
    last_poll_ns: int | None = None
    last_latency_s: float | None = None
    last_error: str | None = None
    down_since: float | None = None
    latencies: list[float] = field(default_factory=list)


class MachinePoller:
    """Polls one machine forever (until cancelled) and hands each batch to the sinks."""

    def __init__(
        self,
        machine: MachineConfig,
        origin: Origin,
        sinks: Sequence[Sink],
        backoff: Backoff | None = None,
        connector: Connector | None = None,
    ) -> None:
        self.machine = machine
        self.origin = origin
        self.sinks = list(sinks)
        self.backoff = backoff or Backoff(initial=0.5, cap=30.0)
        self.connector = connector or machine.build_connector()
        self.stats = PollStats()

    async def run(self) -> None:
        """Connect, poll until a failure, close, back off, repeat. Returns only by cancellation."""
        try:
            while True:
                try:
                    # asyncio.timeout, not wait_for: Python 3.11's wait_for loses a cancellation that
                    # arrives as the inner call finishes, and the poller would run on after a stop.
                    async with asyncio.timeout(connect_limit(self.machine)):
                        await self.connector.connect()
                    self._mark_up()
                    await self._poll_until_failure()
                except (ConnectorError, TimeoutError) as exc:
                    self._mark_down(_reason(exc))
                except Exception as exc:  # a bug in one connector must not stop the others
                    log.exception("machine %s: unexpected error in the connector (please report it)", self.machine.id)
                    self._mark_down(f"internal error: {type(exc).__name__}: {exc}")
                except asyncio.CancelledError:
                    if _cancel_requested():
                        raise
                    # A library swallowed a timeout's cancellation and let a stray one escape:
                    # that is a failed poll of this machine, not a request to stop the agent.
                    log.warning("machine %s: the connector was interrupted by a stray cancellation", self.machine.id)
                    self._mark_down("connector interrupted (stray cancellation)")
                await self.connector.close()
                _honour_swallowed_cancellation()
                delay = self.backoff.next_delay()
                log.debug("machine %s: retrying in %.1f s", self.machine.id, delay)
                await asyncio.sleep(delay)
        finally:
            await self.connector.close()
            self.stats.state = ConnectionState.CLOSED

    async def _poll_until_failure(self) -> None:
        loop = asyncio.get_running_loop()
        interval = self.machine.interval
        timeout = self.machine.effective_timeout
        next_at = loop.time()
        while True:
            _honour_swallowed_cancellation()
            started = loop.time()
            try:
                async with asyncio.timeout(timeout):
                    batch = await self.connector.read()
            except TimeoutError as exc:
                raise ReadTimeout(self.machine.id, f"no answer within {timeout:g} s") from exc
            latency = loop.time() - started
            self._record(batch, latency)
            if batch.samples:  # subscribe mode with nothing changed: no message, no outbox entry, no write
                for sink in self.sinks:
                    await sink.submit(batch, self.origin)
            next_at += interval
            now = loop.time()
            if next_at < now:
                missed = math.ceil((now - next_at) / interval)
                self.stats.skipped_slots += missed
                next_at += missed * interval
                log.debug("machine %s: poll overran, skipped %d slot(s)", self.machine.id, missed)
            await asyncio.sleep(next_at - now)

    def _record(self, batch: Batch, latency: float) -> None:
        self.stats.polls += 1
        self.stats.last_poll_ns = batch.polled_at_ns
        self.stats.last_latency_s = latency
        self.stats.latencies.append(latency)
        del self.stats.latencies[:-1000]

    def _mark_up(self) -> None:
        previous = self.stats.state
        self.stats.state = ConnectionState.UP
        self.stats.last_error = None
        self.backoff.reset()
        if previous is ConnectionState.DOWN and self.stats.down_since is not None:
            log.info("machine %s: recovered after %.0f s", self.machine.id, time.monotonic() - self.stats.down_since)
        elif previous is not ConnectionState.UP:
            log.info("machine %s: connected", self.machine.id)
        self.stats.down_since = None
        self._tell_sinks("up", None)

    def _mark_down(self, reason: str) -> None:
        self.stats.failures += 1
        self.stats.last_error = reason
        if self.stats.state is not ConnectionState.DOWN:
            self.stats.state = ConnectionState.DOWN
            self.stats.down_since = time.monotonic()
            log.warning(
                "machine %s: down: %s; retrying with backoff (up to %.0f s)", self.machine.id, reason, self.backoff.cap
            )
            self._tell_sinks("down", reason)
        else:
            log.debug("machine %s: still down: %s", self.machine.id, reason)

    def _tell_sinks(self, state: str, reason: str | None) -> None:
        for sink in self.sinks:
            sink.machine_state_changed(self.origin, state, reason)


def connect_limit(machine: MachineConfig) -> float:
    """How long a connect may take before the poller gives up: the connector's own limit, at least 5 s.

    Connecting (an OPC UA session handshake, say) takes longer than one poll, so the poll
    timeout alone would fail every connect of a fast-polled machine.
    """
    configured = getattr(machine, "connect_timeout", None)
    return max(machine.effective_timeout, 5.0, float(configured) if configured else 0.0) + 1.0


def _honour_swallowed_cancellation() -> None:
    """Stop if this task was asked to stop but a library swallowed the CancelledError.

    ``task.cancel()`` delivers one CancelledError; code below us that catches it (asyncua's
    wait_for2, Python 3.11's wait_for when the inner call finishes at the same moment) leaves
    the request pending but unseen, and a poller that retries for ever would never stop: the
    agent's shutdown would hang. ``cancelling()`` still counts the request, so check it at every
    turn of the loops.
    """
    task = asyncio.current_task()
    if task is not None and task.cancelling() > 0:
        raise asyncio.CancelledError


def _cancel_requested() -> bool:
    """Whether someone asked to cancel the running task (as opposed to a stray CancelledError)."""
    task = asyncio.current_task()
    return task is None or task.cancelling() > 0


def _reason(exc: BaseException) -> str:
    if isinstance(exc, TimeoutError):
        return "connect timed out"
    return str(exc)
