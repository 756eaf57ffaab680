"""What the rest of the agent may rely on in a delivery sink, whichever way the data leaves the box.

An agent delivers through exactly one of two sinks, chosen by ``outbox.deliver_to``: the MQTT
publisher (``edge_agent.delivery.publisher``) or the direct InfluxDB sink
(``edge_agent.delivery.influx_sink``). Both keep what they were given in a durable outbox until the
far end has it. The runtime hands them batches, alert events and anomaly scores, and the status
page and ``/metrics`` show their link, counters and backlog, all through ``DeliverySink``: neither
needs to know which of the two it holds.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Protocol
from urllib.parse import urlsplit

from edge_agent.core.origin import Origin
from edge_agent.core.sinks import Sink

if TYPE_CHECKING:
    from _typeshed import DataclassInstance

    from edge_agent.delivery.outbox import Outbox
    from edge_agent.delivery.replay import BacklogReplay

__all__ = ["DeliverySink", "url_address"]


class DeliverySink(Sink, Protocol):
    """A sink that delivers onwards through the outbox: MQTT publisher or direct InfluxDB sink.

    Its backlog is ``outbox`` (what waits, what was given up) with ``replay`` (the progress of
    the current or last drain of a backlog after an outage).
    """

    @property
    def target(self) -> str:
        """Where the data goes, without any credential: ``host:port`` or the URL's scheme, host and port."""
        ...

    @property
    def connected(self) -> bool | None:
        """Whether the link is up now; None when the sink has no lasting link to tell about."""
        ...

    @property
    def stats(self) -> DataclassInstance:
        """This process's counters; every numeric field is shown on the status page and in ``/metrics``."""
        ...

    @property
    def outbox(self) -> Outbox:
        """The durable outbox everything passes through."""
        ...

    @property
    def replay(self) -> BacklogReplay:
        """Progress of the backlog replay."""
        ...

    async def submit_event(self, origin: Origin, kind: str, event: dict[str, Any]) -> None:
        """Deliver an alert event (``kind="alerts"``) or an anomaly score (``"scores"``) durably, in order.

        Returns once the event is in the outbox. An event that cannot be encoded is logged and not
        stored; nothing is raised.
        """
        ...


def url_address(url: str) -> str:
    """The scheme, host and port of ``url``: what the page may show of it (never a user or password)."""
    parts = urlsplit(url)
    return f"{parts.scheme}://{parts.hostname}" + (f":{parts.port}" if parts.port else "")
