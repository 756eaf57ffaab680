"""Forwarding malformed payloads to the dead-letter topic, and holding their ack until the broker has the copy.

A malformed payload can never be written, and holding it back would stop the stream for every
machine behind it, so the bridge acks it, but only once the broker acknowledged its copy on the
dead-letter topic (``edge_agent.ingest.deadletter`` builds topic and envelope): the bytes are then
kept somewhere a person can look at them. Each send gives a future that resolves at that PUBACK:
True when the broker took the copy, False when it refused it or the connection it went out on is
gone (the original then belongs to that connection too, and its redelivery is forwarded again).
"""

from __future__ import annotations

import asyncio
import logging
import time

import paho.mqtt.client as mqtt

from edge_agent.core.payload_json import MAX_PAYLOAD_BYTES
from edge_agent.core.problems import ProblemLog, problem_kind
from edge_agent.ingest.deadletter import dead_letter_payload, dead_letter_topic
from edge_agent.ingest.stats import IngestStats, Message
from edge_agent.ingest.subscriber import Subscriber

__all__ = ["DeadLetterSender"]

log = logging.getLogger(__name__)


class DeadLetterSender:
    """Counts, logs (once per kind of problem per interval) and forwards malformed payloads."""

    def __init__(
        self,
        subscriber: Subscriber,
        stats: IngestStats,
        problems: ProblemLog,
        *,
        topic_prefix: str,
        dead_letter_prefix: str,
        client_id: str,
    ) -> None:
        self.subscriber = subscriber
        self.stats = stats
        self.problems = problems
        self.topic_prefix = topic_prefix
        self.dead_letter_prefix = dead_letter_prefix
        self.client_id = client_id
        self._pending: dict[int, asyncio.Future[bool]] = {}  # our publish mid -> its PUBACK
        self._refusal_logged = False

    def send(self, message: Message, reason: str) -> asyncio.Future[bool]:
        """Count and log a malformed payload and publish it to the dead-letter topic; the future is its PUBACK."""
        kind = problem_kind(reason)
        self.stats.malformed += 1
        self.stats.malformed_by_kind[kind] = self.stats.malformed_by_kind.get(kind, 0) + 1
        topic = dead_letter_topic(self.dead_letter_prefix, self.topic_prefix, message.topic)
        skipped = self.problems.due(kind)
        if skipped is not None:
            log.warning(
                "ingest: malformed payload on %s: %s. Forwarded to %s and acked%s (one line per kind of problem "
                "per %.0f s; each one at DEBUG)",
                message.topic,
                reason,
                topic,
                f"; {skipped} more with this problem since the last line" if skipped else "",
                self.problems.interval,
            )
        log.debug(
            "ingest: malformed payload on %s: %s; payload starts %r", message.topic, reason, message.payload[:200]
        )
        future: asyncio.Future[bool] = asyncio.get_running_loop().create_future()
        envelope = dead_letter_payload(
            topic=message.topic,
            payload=message.payload,
            reason=reason,
            kind=kind,
            received_at_ns=time.time_ns(),
            bridge=self.client_id,
            max_bytes=MAX_PAYLOAD_BYTES,
        )
        info = self.subscriber.publish(topic, envelope, message)
        if info is None:
            future.set_result(False)  # this copy is never acked; its redelivery is dead-lettered then
            return future
        if info.rc not in (mqtt.MQTT_ERR_SUCCESS, mqtt.MQTT_ERR_NO_CONN):
            self._refused(f"paho could not queue it ({mqtt.error_string(info.rc)})")
            future.set_result(False)
            return future
        # on_publish arrives through call_soon_threadsafe, so never before this line runs.
        self._pending[info.mid] = future
        return future

    def acked(self, mid: int, failed: bool, reason: str) -> None:
        """The broker answered the publish ``mid`` (in the event loop)."""
        future = self._pending.pop(mid, None)
        if future is None or future.done():
            return
        if failed:
            self._refused(f"the broker answered {reason}")
        else:
            self.stats.dead_lettered += 1
        future.set_result(not failed)

    def forget(self) -> None:
        """After a reconnect: the PUBACKs still awaited belong to the old connection and never come."""
        pending, self._pending = self._pending, {}
        for future in pending.values():
            if not future.done():
                future.set_result(False)

    def _refused(self, why: str) -> None:
        self.stats.dead_letter_failed += 1
        if not self._refusal_logged:
            self._refusal_logged = True
            log.error(
                "ingest: a malformed payload could not be forwarded to the dead-letter topic under %s/ (%s); it is "
                "acked anyway so the stream goes on, and is lost. Fix: allow client id %r to publish to %s/# in the "
                "broker's ACL. Further failures are only counted (dead_letter_failed)",
                self.dead_letter_prefix,
                why,
                self.client_id,
                self.dead_letter_prefix,
            )
