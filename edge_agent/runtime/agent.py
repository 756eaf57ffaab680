"""The agent process: one supervised poll task per machine feeding the sinks, until told to stop.

Every task is named (``poll:<machine>``) so a stack dump or a log line says whose it is. A
poller never ends on its own (it reconnects forever), so a task that does end is a bug: it is
logged and restarted, and the other machines go on.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Coroutine, Sequence
from typing import TYPE_CHECKING, Any

from connectors import MachineConfig
from edge_agent.alerts.board import AlertBoard
from edge_agent.alerts.commands import ACK_KIND, REPLY_KIND, RefusalLog, parse_ack, reply, request_id_of
from edge_agent.alerts.sink import AlertSink
from edge_agent.core.errors import CommandError, ConnectorError
from edge_agent.core.origin import Origin
from edge_agent.core.samples import Batch
from edge_agent.core.sinks import Sink
from edge_agent.delivery.output import DeliverySink
from edge_agent.delivery.publisher import MqttPublisher
from edge_agent.runtime.config import AgentConfig
from edge_agent.runtime.poller import MachinePoller, connect_limit

if TYPE_CHECKING:
    from edge_agent.delivery.influx_sink import InfluxSink

log = logging.getLogger(__name__)

SHUTDOWN_GRACE_S = 3.0


def origin_of(config: AgentConfig, machine: MachineConfig) -> Origin:
    """The plant position of a machine: its own area/line, else the site's."""
    return Origin(config.site.name, machine.area or config.site.area, machine.line or config.site.line, machine.id)


class Agent:
    """Owns the pollers and sinks of one configuration."""

    def __init__(self, config: AgentConfig, extra_sinks: Sequence[Sink] = ()) -> None:
        self.config = config
        self.sinks: list[Sink] = list(extra_sinks)
        self.delivery: DeliverySink | None = None
        """Where batches, alert events and scores leave the box; None when the agent only polls."""
        self.publisher: MqttPublisher | None = None  # the delivery sink with MQTT; also receives commands
        self.influx_sink: InfluxSink | None = None  # imported only when used: influxdb-client is heavy
        if config.outbox.deliver_to == "influxdb" and config.influxdb is not None:
            from edge_agent.delivery.influx_sink import InfluxSink

            self.influx_sink = self.delivery = InfluxSink(config.influxdb, config.site.name, config.outbox)
        elif config.mqtt is not None:
            self.publisher = self.delivery = MqttPublisher(config.mqtt, config.site.name, outbox=config.outbox)
        if self.delivery is not None:
            self.sinks.append(self.delivery)
        self.alert_board = AlertBoard()
        self.alerts: AlertSink | None = None
        self._alert_sends: set[asyncio.Task[None]] = set()
        if config.alerts is not None and config.alerts.enabled:
            self.alerts = AlertSink(config.alerts, on_alert=self._on_alert, on_score=self._on_score)
            self.alert_board.engine_acknowledge = self.alerts.acknowledge
            self.sinks.append(self.alerts)
        self.pollers = [
            MachinePoller(machine, origin_of(config, machine), self.sinks)
            for machine in config.machines
            if machine.enabled
        ]
        self.ack_commands = 0  # acknowledge commands received over MQTT (done or refused)
        self._ack_refusals = RefusalLog()  # a flood of junk commands gets a few log lines, not one each
        if self.publisher is not None and self.alerts is not None:
            for poller in self.pollers:
                if self.alerts.config.for_machine(poller.machine.id).enabled:
                    self._listen_for_acks(self.publisher, poller.origin)

    async def run(self, stop: asyncio.Event) -> None:
        """Poll until ``stop`` is set, then shut down within a few seconds."""
        for sink in self.sinks:
            await sink.start()
        if self.alerts is not None:
            for poller in self.pollers:
                self.alerts.add_machine(poller.origin)
        tasks = {self._spawn(poller): poller for poller in self.pollers}
        log.info("agent: polling %d machine(s)", len(tasks))
        stop_waiter = asyncio.create_task(_wait_for(stop), name="agent:stop")
        try:
            while not stop.is_set():
                done, _ = await asyncio.wait({*tasks, stop_waiter}, return_when=asyncio.FIRST_COMPLETED)
                for task in done - {stop_waiter}:
                    poller = tasks.pop(task)
                    why = "it was cancelled" if task.cancelled() else repr(task.exception())
                    log.error("agent: poll task %s ended unexpectedly (%s); restarting it", task.get_name(), why)
                    tasks[self._spawn(poller)] = poller
        finally:
            stop_waiter.cancel()
            await self._shutdown(list(tasks))

    def _on_alert(self, origin: Origin, event: dict[str, Any]) -> None:
        """An alert was raised, escalated, acknowledged or cleared: show it and send it (durably).

        With MQTT: retained on ``.../alerts``. With the direct InfluxDB sink: a point in ``alerts``.
        """
        self.alert_board.record(event)
        level = logging.WARNING if event.get("event") in ("raised", "escalated") else logging.INFO
        log.log(level, "alert %s on %s: %s", event.get("event"), origin.machine, event.get("summary"))
        if self.delivery is not None:
            self._send(self.delivery.submit_event(origin, "alerts", event), "alert:send")

    def _on_score(self, origin: Origin, score: dict[str, Any]) -> None:
        """A window was scored: send the score (for plotting; MQTT QoS 1, not retained, or InfluxDB) durably."""
        if self.delivery is not None:
            self._send(self.delivery.submit_event(origin, "scores", score), "score:send")

    def _send(self, sending: Coroutine[Any, Any, None], name: str) -> None:
        """Run one durable append as a task (kept referenced until done; appends keep their order)."""
        task = asyncio.create_task(sending, name=name)
        self._alert_sends.add(task)
        task.add_done_callback(self._alert_sends.discard)

    def _listen_for_acks(self, publisher: MqttPublisher, origin: Origin) -> None:
        """Acknowledge commands for one machine: ``.../{machine}/alerts/ack`` (see edge_agent.alerts.commands)."""

        def handler(topic: str, payload: bytes) -> None:
            task = asyncio.create_task(self._acknowledge_command(publisher, origin, payload), name="alert:ack")
            self._alert_sends.add(task)
            task.add_done_callback(self._alert_sends.discard)

        publisher.subscribe(origin.topic(publisher.config.topic_prefix, ACK_KIND), handler)

    async def _acknowledge_command(self, publisher: MqttPublisher, origin: Origin, payload: bytes) -> None:
        """Check the command, acknowledge through the same path as the status page, answer on ``.../ack/reply``."""
        assert self.alerts is not None
        self.ack_commands += 1
        reply_topic = origin.topic(publisher.config.topic_prefix, REPLY_KIND)
        try:
            request = parse_ack(payload, origin)
        except Exception as exc:  # noqa: BLE001 - CommandError, or a bug of the checks: this command's alone, logged
            refusal = str(exc) if isinstance(exc, CommandError) else f"internal error: {type(exc).__name__}"
            self._ack_refusals.refused(origin.machine, refusal)
            publisher.send_reply(reply_topic, reply(origin, ok=False, error=refusal, request_id=request_id_of(payload)))
            return
        try:
            problem = await self.alerts.acknowledge_alert(origin.machine, request.alert_id, request.by)
        except Exception as exc:  # a bad command must never end anything; say so and answer
            log.exception("alerts: acknowledge command for %s failed unexpectedly", origin.machine)
            publisher.send_reply(
                reply_topic, reply(origin, ok=False, request=request, error=f"internal error: {exc!r}")
            )
            return
        if problem is not None:
            self._ack_refusals.refused(origin.machine, problem, request.by)
            publisher.send_reply(reply_topic, reply(origin, ok=False, request=request, error=problem))
            return
        log.info("alerts: alert %s on %s acknowledged by %r over MQTT", request.alert_id, origin.machine, request.by)
        publisher.send_reply(reply_topic, reply(origin, ok=True, request=request))

    def _spawn(self, poller: MachinePoller) -> asyncio.Task[None]:
        return asyncio.create_task(poller.run(), name=f"poll:{poller.machine.id}")

    async def _shutdown(self, tasks: list[asyncio.Task[None]]) -> None:
        for task in tasks:
            task.cancel()
        if tasks:
            _, pending = await asyncio.wait(tasks, timeout=SHUTDOWN_GRACE_S)
            for task in pending:
                log.warning("agent: %s did not stop within %.0f s; abandoning it", task.get_name(), SHUTDOWN_GRACE_S)
        for sink in self.sinks:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(sink.close(), timeout=SHUTDOWN_GRACE_S)
        log.info("agent: stopped")


async def _wait_for(event: asyncio.Event) -> None:
    await event.wait()


async def poll_once(config: AgentConfig) -> list[tuple[MachineConfig, Batch | str]]:
    """Poll every enabled machine once, concurrently: a batch, or the reason it failed."""

    async def one(machine: MachineConfig) -> tuple[MachineConfig, Batch | str]:
        connector = machine.build_connector()
        try:
            await asyncio.wait_for(connector.connect(), timeout=connect_limit(machine))
            return machine, await asyncio.wait_for(connector.read(), timeout=machine.effective_timeout)
        except ConnectorError as exc:
            return machine, str(exc)
        except TimeoutError:
            return machine, f"machine {machine.id!r}: no answer within the timeout"
        finally:
            await connector.close()

    return list(await asyncio.gather(*(one(m) for m in config.machines if m.enabled)))
