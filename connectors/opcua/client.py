"""The OPC UA connector: one batched Read per poll, or a subscription whose changes each read flushes.

After every connect the server's namespace array is read and each ``nsu=<uri>;...`` node id is
resolved to the namespace index the server uses now; ``ns=<index>;...`` ids are used as written.

``mode: poll`` (default): each ``read()`` is one Read service call for all nodes, split only into
chunks of the server's MaxNodesPerRead (or ``max_nodes_per_read``).
``mode: subscribe``: ``connect()`` creates one subscription with a monitored item per node
(sampling interval, queue size, deadband from the config); the server reports changes, and each
``read()`` returns the changes received since the previous one (bounded by ``max_queued_samples``;
the oldest go first and are counted in ``dropped_samples``).

Tags without a ``unit`` take the DisplayName of their node's EngineeringUnits property, looked up
once per connect (TranslateBrowsePathsToNodeIds, then Read).

Only Read, TranslateBrowsePathsToNodeIds, CreateSubscription/CreateMonitoredItems/Publish and the
session services are used: never Write, never Call.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Sequence
from dataclasses import replace

from asyncua import ua
from asyncua.client.client import Client
from asyncua.ua.object_ids import ObjectIds
from asyncua.ua.uaerrors import UaError

from connectors.base import POLL_BUDGET
from connectors.cancellation import stray_cancellation_is_a_lost_link
from connectors.opcua.config import OpcUaMachine
from connectors.opcua.convert import apply_max_age, status_name, to_sample
from connectors.opcua.deadline import until, within
from connectors.opcua.handshake import SessionReport, prepare_own
from connectors.opcua.nodes import NodeTarget, chunked, engineering_units_path, resolve_node
from connectors.opcua.own_cert import OwnCertificate
from connectors.opcua.security import mode_name, policy_name
from connectors.opcua.session import abort, describe, discard, new_client, open_session, session_target
from connectors.opcua.subscription import SubscriptionFeed
from connectors.opcua.value_reader import ValueReader, operation_limit
from edge_agent.core.connection import ConnectionState
from edge_agent.core.errors import CertificateRefused, ConnectError, DeviceError, ReadTimeout
from edge_agent.core.samples import Batch, Sample, now_ns

_log = logging.getLogger(__name__)


class OpcUaConnector:
    """Reads one OPC UA server; see ``connectors/opcua/README.md``."""

    def __init__(self, config: OpcUaMachine, *, probe: bool = False) -> None:
        """``probe=True`` (``edge-agent doctor``): store nothing but a refused certificate in rejected/."""
        self._config = config
        self._probe = probe
        self.report = SessionReport()
        """What the last connect found: offered policies, the choice, certificate trust, login."""
        self._client: Client | None = None
        self._state = ConnectionState.CLOSED
        self._targets: list[NodeTarget] = []
        self._reader = ValueReader(
            config.id, config.max_nodes_per_read, warn_once=self._warn_once, on_link_down=self._link_down
        )
        self._server_max_items_per_call = 0
        self.namespaces: tuple[str, ...] = ()
        """The server's namespace array as read at the last connect."""
        self._feed = SubscriptionFeed(config, warn_once=self._warn_once, current_client=lambda: self._client)
        self._warned: set[str] = set()
        self._last_failure: str | None = None
        self._own: OwnCertificate | None = None
        self._refusals_seen: set[str] = set()

    def _link_down(self) -> None:
        self._state = ConnectionState.DOWN

    def _warn_once(self, message: str) -> None:
        """Log a configuration problem once per connector, not at every reconnect."""
        if message not in self._warned:
            self._warned.add(message)
            _log.warning("machine %r: %s", self.machine_id, message)

    @property
    def machine_id(self) -> str:
        """The id of the machine this connector reads."""
        return self._config.id

    @property
    def state(self) -> ConnectionState:
        """The link's current state."""
        return self._state

    @property
    def session_security(self) -> tuple[str, str] | None:
        """The policy and mode of the open session's secure channel, e.g. (Basic256Sha256, SignAndEncrypt)."""
        client = self._client
        if client is None:
            return None
        policy = client.security_policy
        return policy_name(policy.URI), mode_name(policy.Mode)

    @property
    def dropped_samples(self) -> int:
        """Subscribe mode: changes dropped because more than ``max_queued_samples`` waited for a read."""
        return self._feed.changes.dropped

    @property
    def nodes_per_read(self) -> int:
        """Nodes per Read request (0: all); see ``ValueReader.nodes_per_read``."""
        return self._reader.nodes_per_read

    @property
    def reads_per_cycle(self) -> int:
        """How many Read service calls one poll makes."""
        readable = sum(1 for t in self._targets if t.node_id is not None)
        return len(chunked(range(readable), self.nodes_per_read)) if readable else 0

    async def connect(self) -> None:
        """Open the link. Raises ``ConnectError`` when the machine cannot be reached."""
        try:
            with stray_cancellation_is_a_lost_link(self.machine_id):
                await self._connect()
        except ConnectError as exc:
            self._state = ConnectionState.DOWN
            self._note_failure(exc)
            raise
        self._last_failure = None

    def _note_failure(self, exc: ConnectError) -> None:
        """Log a refused server certificate when the runtime would not: it logs only the first
        failure of a down period, so a certificate refused after, say, the server was off for a
        while would otherwise show only in debug logs, and the operator needs its fingerprint."""
        previous, self._last_failure = self._last_failure, str(exc)
        if isinstance(exc, CertificateRefused) and exc.fingerprint not in self._refusals_seen:
            self._refusals_seen.add(exc.fingerprint)
            if previous is not None:  # the first failure of a down period: the runtime logs that one
                _log.warning("machine %r: %s", self.machine_id, exc.detail)

    async def _connect(self) -> None:
        """Open a session, then resolve every node id against the server's current namespace array."""
        await self._drop_client()
        self._state = ConnectionState.CONNECTING
        config = self._config
        client = new_client(config)
        self.report = SessionReport()
        if config.security.enabled and self._own is None:
            # Made on the first connect (RSA key generation) and loaded once (the key check costs
            # CPU): before the clock of the deadline starts.
            self._own = await prepare_own(session_target(config), probe=self._probe)
        # One deadline for the whole sequence: endpoints, session, namespace lookup, units, subscription.
        deadline = asyncio.get_running_loop().time() + config.effective_connect_timeout
        try:
            await open_session(client, config, self.report, deadline, probe=self._probe, own=self._own)
        except BaseException:
            self._state = ConnectionState.DOWN
            raise
        self._client = client
        try:
            async with until(deadline):
                await self._resolve(client)
                if config.mode == "subscribe":
                    await self._feed.start(client, self._targets, self._server_max_items_per_call)
        except TimeoutError as exc:
            await self._drop_client()
            self._state = ConnectionState.DOWN
            raise ConnectError(
                config.id,
                f"the server took longer than {config.effective_connect_timeout:g} s to set up the session. "
                "Fix: raise connect_timeout",
            ) from exc
        except asyncio.CancelledError:
            self._client = None
            abort(client)
            self._state = ConnectionState.DOWN
            raise
        except BaseException:
            await self._drop_client()
            self._state = ConnectionState.DOWN
            raise
        self._state = ConnectionState.UP

    async def _resolve(self, client: Client) -> None:
        """Read the namespace array and MaxNodesPerRead in one Read, then map every tag to a NodeId."""
        namespace_array, max_nodes, max_items = await self._reader.read(
            client,
            [
                ua.NodeId(ua.Int32(ObjectIds.Server_NamespaceArray)),
                ua.NodeId(ua.Int32(ObjectIds.Server_ServerCapabilities_OperationLimits_MaxNodesPerRead)),
                ua.NodeId(ua.Int32(ObjectIds.Server_ServerCapabilities_OperationLimits_MaxMonitoredItemsPerCall)),
            ],
            ua.TimestampsToReturn.Neither,
            self._config.effective_connect_timeout,
        )
        namespaces = namespace_array.Value.Value if namespace_array.Value is not None else None
        status = namespace_array.StatusCode or ua.StatusCode()
        if not status.is_good() or not isinstance(namespaces, list):
            raise ConnectError(self.machine_id, f"cannot read the server's namespace array ({status_name(status)})")
        self.namespaces = tuple(str(uri) for uri in namespaces)
        self._reader.server_max_nodes_per_read = operation_limit(max_nodes)
        self._server_max_items_per_call = operation_limit(max_items)
        targets = []
        for tag in self._config.tags:
            try:
                targets.append(NodeTarget(tag, resolve_node(tag.node, self.namespaces)))
            except LookupError as exc:
                self._warn_once(f"tag {tag.name!r}: {exc}")
                targets.append(NodeTarget(tag, None, str(exc)))
        self._targets = targets
        if self._config.units_from_server:
            await self._lookup_units(client)

    async def _lookup_units(self, client: Client) -> None:
        """Fill in units from each node's EngineeringUnits property, for tags that name none.

        Best effort: a server without the property, or one that refuses the lookup, leaves the
        unit empty; only a lost link is an error (the next read would fail anyway).
        """
        wanted = [i for i, t in enumerate(self._targets) if t.node_id is not None and t.tag.unit is None]
        if not wanted:
            return
        try:
            async with within(self._config.effective_connect_timeout):
                found = await self._engineering_units(client, [self._targets[i] for i in wanted])
        except (TimeoutError, UaError, DeviceError, ReadTimeout) as exc:
            _log.debug("machine %r: no units from the server: %s", self.machine_id, describe(exc))
            return
        for index, unit in zip(wanted, found, strict=True):
            if unit:
                self._targets[index] = replace(self._targets[index], server_unit=unit)

    async def _engineering_units(self, client: Client, targets: Sequence[NodeTarget]) -> list[str | None]:
        property_ids: list[ua.NodeId | None] = []
        for chunk in chunked(targets, self.nodes_per_read):
            paths = [engineering_units_path(t.node_id) for t in chunk if t.node_id is not None]
            for result in await client.uaclient.translate_browsepaths_to_nodeids(paths):
                good = result.StatusCode.is_good() and result.Targets
                property_ids.append(
                    ua.NodeId(result.Targets[0].TargetId.Identifier, result.Targets[0].TargetId.NamespaceIndex)
                    if good
                    else None
                )
        readable = [n for n in property_ids if n is not None]
        values = iter(
            await self._reader.read(
                client, readable, ua.TimestampsToReturn.Neither, self._config.effective_connect_timeout
            )
            if readable
            else []
        )
        units: list[str | None] = []
        for node_id in property_ids:
            info = next(values).Value if node_id is not None else None
            eu = info.Value if info is not None else None
            text = eu.DisplayName.Text if isinstance(eu, ua.EUInformation) and eu.DisplayName is not None else None
            units.append(text or None)
        return units

    async def read(self) -> Batch:
        """One poll (see ``_read``); a stray cancellation from the library is a lost link."""
        try:
            with stray_cancellation_is_a_lost_link(self.machine_id):
                return await self._read()
        except ConnectError:
            if self._state is not ConnectionState.CLOSED:
                self._state = ConnectionState.DOWN
            raise

    async def _read(self) -> Batch:
        """Poll mode: read every tag now. Subscribe mode: the changes received since the last read."""
        client = self._client
        if client is None:
            if self._state is not ConnectionState.CLOSED:
                self._state = ConnectionState.DOWN
            raise ConnectError(self.machine_id, "not connected. The runtime reconnects")
        if self._config.mode == "subscribe":
            polled_at = now_ns()
            try:
                samples = self._feed.flush(client, polled_at)
            except ConnectError:
                self._state = ConnectionState.DOWN
                raise
            self._state = ConnectionState.UP
            return Batch(self.machine_id, tuple(samples), polled_at_ns=polled_at)
        return await self._poll(client)

    async def _poll(self, client: Client) -> Batch:
        """One Read service call per chunk of nodes, then one sample per tag."""
        polled_at = now_ns()
        readable = [t for t in self._targets if t.node_id is not None]
        results: list[ua.DataValue] = []
        if readable:
            node_ids = [t.node_id for t in readable if t.node_id is not None]
            results = await self._reader.read(
                client, node_ids, ua.TimestampsToReturn.Both, self._config.effective_timeout * POLL_BUDGET
            )
        received = now_ns()
        by_tag = dict(zip((t.tag.name for t in readable), results, strict=True))
        samples: list[Sample] = []
        for target in self._targets:
            tag = target.tag
            if target.node_id is None:
                samples.append(Sample.bad(tag.name, target.problem or "node id not resolved", received, target.unit))
                continue
            sample = to_sample(tag.name, by_tag[tag.name], received, unit=target.unit, node=tag.node, index=tag.index)
            samples.append(apply_max_age(sample, received, self._config.max_age_of(tag)))
        self._state = ConnectionState.UP
        return Batch(self.machine_id, tuple(samples), polled_at_ns=polled_at)

    async def _drop_client(self) -> None:
        client, self._client = self._client, None
        self._feed.subscription = None
        if client is not None:
            await discard(client, self._config)

    async def close(self) -> None:
        """Close the session and the connection. Idempotent; never raises."""
        await self._drop_client()
        self._state = ConnectionState.CLOSED
