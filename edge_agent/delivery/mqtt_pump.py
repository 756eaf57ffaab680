"""The MQTT publisher's outbox pump: entries out to paho in order, removed once the broker acknowledged them.

Two tasks on the event loop (``edge_agent.delivery.publisher`` runs them):

- the pump reads the outbox in order, in chunks, and hands entries to paho as long as fewer than
  ``max_in_flight`` messages await their PUBACK; paho sends them from its own network thread, so
  the event loop never waits on the broker;
- the ack task deletes acknowledged entries in batches (one transaction for many PUBACKs).

paho's ``on_publish`` (the PUBACK; with QoS 0 merely "written to the socket") arrives in paho's
thread; ``puback`` collects the message ids there and wakes the event loop once per burst.
"""

from __future__ import annotations

import asyncio
import collections
import logging
import sqlite3
from collections.abc import Callable
from dataclasses import dataclass

import paho.mqtt.client as mqtt

from edge_agent.delivery.mqtt_session import MqttSession
from edge_agent.delivery.outbox import Outbox
from edge_agent.delivery.replay import BacklogReplay

__all__ = ["ACK_FLUSH_S", "READ_CHUNK", "STORAGE_RETRY_S", "OutboxPump", "PublisherStats"]

# The publisher's logger: the pump is part of it, and log filters name that one.
log = logging.getLogger("edge_agent.delivery.publisher")

READ_CHUNK = 500  # outbox entries read per query while draining
ACK_FLUSH_S = 0.05  # acknowledged entries are deleted in batches at most this often
STORAGE_RETRY_S = 1.0  # after a failed read or delete of the outbox


@dataclass
class PublisherStats:
    """Counters for the status page, metrics and tests (this process only).

    ``submitted`` batches appended to the outbox; ``published`` PUBACKs received for telemetry;
    ``sent`` telemetry messages handed to paho (a re-send after a reconnect counts once);
    ``connects`` successful connections; ``dropped`` batches the outbox could not keep.
    """

    submitted: int = 0
    sent: int = 0
    published: int = 0
    connects: int = 0
    dropped: int = 0


class OutboxPump:
    """Keeps up to ``max_in_flight`` outbox entries with paho and removes the acknowledged ones.

    ``is_connected()`` says whether paho may be given messages now; ``on_progress()`` is called on
    the event loop after acknowledged entries left the outbox (the publisher refreshes its status).
    """

    def __init__(
        self,
        outbox: Outbox,
        session: MqttSession,
        replay: BacklogReplay,
        stats: PublisherStats,
        *,
        qos: int,
        max_in_flight: int,
        is_connected: Callable[[], bool],
        on_progress: Callable[[], None],
    ) -> None:
        self.outbox = outbox
        self.session = session
        self.replay = replay
        self.stats = stats
        self.qos = qos
        self.max_in_flight = max_in_flight
        self._is_connected = is_connected
        self._on_progress = on_progress
        self._in_flight: dict[int, int] = {}  # paho mid -> outbox seq
        self._handed_upto = 0
        self._acked: list[int] = []
        self._puback_mids: collections.deque[int] = collections.deque()  # appended in paho's thread
        self._puback_scheduled = False
        self._storage_error_logged = False
        self._wake_pump = asyncio.Event()
        self._wake_acks = asyncio.Event()
        self._all_acked = asyncio.Event()  # set on every ack; wait_acked() re-checks what is left

    @property
    def in_flight(self) -> int:
        """Telemetry messages handed to paho and not yet acknowledged."""
        return len(self._in_flight)

    def wake(self) -> None:
        """Something new waits in the outbox, or the link came back: look again."""
        self._wake_pump.set()

    def tasks(self) -> list[asyncio.Task[None]]:
        """Start the pump and the ack task (named); the caller cancels them."""
        return [
            asyncio.create_task(self._pump(), name="mqtt:pump"),
            asyncio.create_task(self._remove_acked(), name="mqtt:acks"),
        ]

    async def wait_acked(self) -> None:
        """Return once nothing is in flight any more, or the link is down (wrap in a timeout)."""
        while self._in_flight and self._is_connected():
            self._all_acked.clear()
            await self._all_acked.wait()

    def puback(self, mid: int) -> None:
        """paho's thread: a PUBACK (or a status message's) arrived for ``mid``.

        One wake-up of the event loop per burst of PUBACKs, not one per message: while draining a
        backlog thousands arrive per second, and each call_soon_threadsafe costs a pipe write.
        """
        self._puback_mids.append(mid)
        if not self._puback_scheduled:
            self._puback_scheduled = True
            self.session.call_in_loop(self._take_pubacks)

    def forget_unsent_qos0(self) -> None:
        """QoS 0: paho drops what it had not written when the connection goes and never reports it.

        Those entries are still in the outbox; start again from its front so they are sent anew.
        """
        self._in_flight.clear()
        self._handed_upto = 0
        self.outbox.pinned_upto = 0

    async def flush_acks(self) -> None:
        """Remove the acknowledged entries from the outbox now."""
        acked, self._acked = self._acked, []
        if not acked:
            return
        try:
            await self.outbox.remove(acked)
        except RuntimeError:
            return  # outbox already closed: the entries are sent again next start, harmlessly
        except sqlite3.Error as exc:
            # The disk failed under us: keep the acks and try again; until then they would only be re-sent.
            self._acked = acked + self._acked
            self._report_storage_error(exc)
            await asyncio.sleep(STORAGE_RETRY_S)
            self._wake_acks.set()
            return
        self.replay.check()
        self._on_progress()

    async def _pump(self) -> None:
        """Hand outbox entries to paho, in order, while the in-flight window has room."""
        client = self.session.client
        while True:
            await self._wake_pump.wait()
            self._wake_pump.clear()
            while self._is_connected() and len(self._in_flight) < self.max_in_flight:
                room = self.max_in_flight - len(self._in_flight)
                try:
                    entries = await self.outbox.read_after(self._handed_upto, min(room, READ_CHUNK), pin=True)
                except sqlite3.Error as exc:
                    self._report_storage_error(exc)
                    await asyncio.sleep(STORAGE_RETRY_S)
                    continue
                self._storage_error_logged = False
                if not entries:
                    break
                for entry in entries:
                    info = client.publish(entry.topic, entry.payload, qos=self.qos, retain=entry.retain)
                    if info.rc not in (mqtt.MQTT_ERR_SUCCESS, mqtt.MQTT_ERR_NO_CONN):
                        log.debug("MQTT: paho refused a publish (%s); retrying later", mqtt.error_string(info.rc))
                        break
                    self._in_flight[info.mid] = entry.seq
                    self._handed_upto = entry.seq
                    self.stats.sent += 1
                else:
                    continue
                break

    async def _remove_acked(self) -> None:
        """Delete acknowledged entries from the outbox, many per transaction."""
        while True:
            await self._wake_acks.wait()
            await asyncio.sleep(ACK_FLUSH_S)  # let acks gather: one delete for many of them
            self._wake_acks.clear()
            await self.flush_acks()

    def _take_pubacks(self) -> None:
        self._puback_scheduled = False  # first: a PUBACK arriving from now on schedules another call
        taken = len(self._acked)
        while self._puback_mids:
            seq = self._in_flight.pop(self._puback_mids.popleft(), None)
            if seq is None:
                continue  # a status message
            self.stats.published += 1
            self._acked.append(seq)
        self.replay.delivered(self._acked[taken:])  # counted on arrival: a cut replay says how far it really got
        self._all_acked.set()
        self._wake_acks.set()
        self._wake_pump.set()

    def _report_storage_error(self, exc: sqlite3.Error) -> None:
        if not self._storage_error_logged:
            self._storage_error_logged = True
            log.error(
                "MQTT: the outbox %s cannot be read or updated (%s); retrying every %.0f s. Fix: check the disk",
                self.outbox.path,
                exc,
                STORAGE_RETRY_S,
            )
