"""Subscribe mode: one subscription, a monitored item per node, and the changes each read collects.

The server reports changes on asyncua's task; ``SubscriptionFeed`` queues them as samples
(bounded, the oldest go first and are counted), remembers each item's last sample so a quiet tag
can be reported as stale, and keeps the items the server refused so every read names them.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

from asyncua import ua
from asyncua.client.client import Client
from asyncua.client.ua_client import UaClientState
from asyncua.common.subscription import DataChangeNotif, Subscription
from asyncua.ua.attribute_ids import AttributeIds
from asyncua.ua.status_codes import StatusCodes
from asyncua.ua.uaerrors import UaStatusCodeError

from connectors.opcua.changes import ChangeQueue
from connectors.opcua.config import OpcUaMachine
from connectors.opcua.convert import apply_max_age, silence_of, status_name, to_sample
from connectors.opcua.deadline import within
from connectors.opcua.nodes import NodeTarget, chunked
from connectors.opcua.session import LINK_ERRORS, describe
from edge_agent.core.errors import ConnectError, DeviceError
from edge_agent.core.samples import Sample, now_ns


class SubscriptionFeed:
    """The subscription of one connection and the changes it reported since the last read."""

    def __init__(
        self,
        config: OpcUaMachine,
        *,
        warn_once: Callable[[str], None],
        current_client: Callable[[], Client | None],
    ) -> None:
        """``current_client`` is the connector's open client, to tell a lost link from a server's verdict."""
        self._config = config
        self._warn_once = warn_once
        self._current_client = current_client
        self.changes = ChangeQueue(config.effective_max_queued_samples)
        self.subscription: Subscription | None = None
        self._targets: Sequence[NodeTarget] = ()
        self._last_changes: dict[int, tuple[Sample, int]] = {}
        """Each monitored item's last sample and when it arrived (ns), for max_age."""
        self._item_problems: dict[str, str] = {}
        self._link_problem: str | None = None

    async def start(self, client: Client, targets: Sequence[NodeTarget], max_items_per_call: int) -> None:
        """One subscription, one monitored item per resolved node; failed items are remembered per tag."""
        config = self._config
        machine_id = config.id
        self.changes.clear()
        self._targets = targets
        self._last_changes = {}
        self._item_problems = {}
        self._link_problem = None
        try:
            async with within(config.effective_connect_timeout):
                subscription = await client.create_subscription(config.interval * 1000, _ChangeHandler(self))
                self.subscription = subscription
                requests = [
                    _monitored_item(config, handle, target)
                    for handle, target in enumerate(targets)
                    if target.node_id is not None
                ]
                results = []
                for chunk in chunked(requests, max_items_per_call):
                    results.extend(await subscription.create_monitored_items(chunk))
        except TimeoutError as exc:
            raise ConnectError(machine_id, "no answer to CreateSubscription / CreateMonitoredItems") from exc
        except UaStatusCodeError as exc:
            raise DeviceError(machine_id, f"the server refused the subscription: {describe(exc)}") from exc
        except LINK_ERRORS as exc:
            raise ConnectError(machine_id, f"connection lost while subscribing: {describe(exc)}") from exc
        for request, result in zip(requests, results, strict=True):
            if isinstance(result, ua.StatusCode):
                target = targets[request.RequestedParameters.ClientHandle]
                reason = status_name(result)
                if result.value == StatusCodes.BadNodeIdUnknown:
                    reason += f": the server has no node {target.tag.node}. Fix: check the node id in an OPC UA browser"
                self._item_problems[target.tag.name] = reason
                self._warn_once(f"tag {target.tag.name!r} cannot be monitored: {reason}")

    def on_change(self, handle: int, data_value: ua.DataValue) -> None:
        """A monitored item reported a change: queue it as a sample (bounded; the oldest go first)."""
        if not 0 <= handle < len(self._targets):
            return
        target = self._targets[handle]
        tag = target.tag
        received = now_ns()
        sample = apply_max_age(
            to_sample(tag.name, data_value, received, unit=target.unit, node=tag.node, index=tag.index),
            received,
            self._config.max_age_of(tag),
        )
        self._last_changes[handle] = (sample, received)
        if self.changes.put(sample):
            self._warn_once(
                f"more than {self._config.effective_max_queued_samples} changes waited for a read; dropping the oldest "
                "(counted in dropped_samples). Fix: raise max_queued_samples, or read more often"
            )

    def on_status(self, status: ua.StatusCode) -> None:
        """The server says the subscription is gone (e.g. BadTimeout): the next read reports it."""
        if not status.is_good():
            client = self._current_client()
            if client is not None and client.uaclient.state is not UaClientState.CONNECTED:
                # asyncua tells subscriptions BadShutdown when it lost the link itself (server
                # killed, network cut): say what happened rather than blame the server.
                self._link_problem = f"connection lost ({status_name(status)}). The runtime reconnects"
            else:
                self._link_problem = f"the server ended the subscription ({status_name(status)})"

    def flush(self, client: Client, polled_at: int) -> list[Sample]:
        """The queued changes, stale marks for quiet tags, and a bad sample per tag that cannot be monitored.

        Raises ``ConnectError`` when the link or the subscription is gone.
        """
        if client.uaclient.state is not UaClientState.CONNECTED or self._link_problem is not None:
            raise ConnectError(self._config.id, self._link_problem or "connection lost. The runtime reconnects")
        samples = self.changes.take_all()
        reported = {sample.tag for sample in samples}
        for handle, (last, arrived) in self._last_changes.items():
            max_age = self._config.max_age_of(self._targets[handle].tag)
            quiet = silence_of(last, arrived, polled_at, max_age) if last.tag not in reported else None
            if quiet is not None:
                samples.append(quiet)
        for target in self._targets:
            tag = target.tag
            problem = target.problem if target.node_id is None else self._item_problems.get(tag.name)
            if problem is not None:
                samples.append(Sample.bad(tag.name, problem, polled_at, target.unit))
        return samples


def _monitored_item(config: OpcUaMachine, handle: int, target: NodeTarget) -> ua.MonitoredItemCreateRequest:
    item = ua.MonitoredItemCreateRequest()
    item.ItemToMonitor = ua.ReadValueId(NodeId=target.node_id, AttributeId=AttributeIds.Value)
    item.MonitoringMode = ua.MonitoringMode.Reporting
    parameters = ua.MonitoringParameters()
    parameters.ClientHandle = ua.UInt32(handle)
    parameters.SamplingInterval = ua.Duration(config.sampling_interval_of(target.tag) * 1000)
    parameters.QueueSize = ua.UInt32(config.queue_size)
    parameters.DiscardOldest = True
    deadband = config.deadband_of(target.tag)
    if deadband > 0:
        change_filter = ua.DataChangeFilter()
        change_filter.Trigger = ua.DataChangeTrigger.StatusValue
        change_filter.DeadbandType = ua.UInt32(1 if config.deadband_type == "absolute" else 2)
        change_filter.DeadbandValue = ua.Double(deadband)
        parameters.Filter = change_filter
    item.RequestedParameters = parameters
    return item


class _ChangeHandler:
    """asyncua's subscription callbacks, forwarded to the feed."""

    def __init__(self, feed: SubscriptionFeed) -> None:
        self._feed = feed

    def datachange_notification(self, _node: Any, _value: Any, data: DataChangeNotif) -> None:
        item = data.monitored_item
        self._feed.on_change(int(item.ClientHandle), item.Value)

    def status_change_notification(self, status: ua.StatusChangeNotification) -> None:
        self._feed.on_status(status.Status)
