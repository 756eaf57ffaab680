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
from dataclasses import dataclass, replace
from typing import Any

from asyncua import ua
from asyncua.client.client import Client
from asyncua.client.ua_client import UaClientState
from asyncua.common.subscription import DataChangeNotif, Subscription
from asyncua.ua.attribute_ids import AttributeIds
from asyncua.ua.object_ids import ObjectIds
from asyncua.ua.status_codes import StatusCodes
from asyncua.ua.uaerrors import UaError, UaStatusCodeError

from connectors.base import POLL_BUDGET
from connectors.cancellation import stray_cancellation_is_a_lost_link
from connectors.opcua.changes import ChangeQueue
from connectors.opcua.config import OpcUaMachine, OpcUaTag
from connectors.opcua.convert import apply_max_age, silence_of, status_name, to_sample
from connectors.opcua.deadline import until, within
from connectors.opcua.handshake import Login, SessionReport, Target, prepare_own, secure
from connectors.opcua.nodes import chunked, engineering_units_path, resolve_node
from connectors.opcua.pki import OwnCertificate
from connectors.opcua.security import mode_name, policy_name
from edge_agent.core.connection import ConnectionState
from edge_agent.core.errors import CertificateRefused, ConnectError, DeviceError, ReadTimeout
from edge_agent.core.samples import Batch, Sample, now_ns

_log = logging.getLogger(__name__)

_LOST_LINK_CODES = frozenset(
    {
        StatusCodes.BadSessionIdInvalid,
        StatusCodes.BadSessionClosed,
        StatusCodes.BadSessionNotActivated,
        StatusCodes.BadSecureChannelIdInvalid,
        StatusCodes.BadSecureChannelClosed,
        StatusCodes.BadConnectionClosed,
        StatusCodes.BadServerNotConnected,
        StatusCodes.BadServerHalted,
        StatusCodes.BadShutdown,
        StatusCodes.BadCommunicationError,
    }
)
"""Service results that mean the session or channel is gone: reconnect rather than retry."""

_LOGIN_CODES = frozenset(
    {
        StatusCodes.BadUserAccessDenied,
        StatusCodes.BadIdentityTokenRejected,
        StatusCodes.BadIdentityTokenInvalid,
        StatusCodes.BadUserSignatureInvalid,
    }
)
"""Connect failures that mean the login was refused."""

_CERTIFICATE_CODES = frozenset(
    {
        StatusCodes.BadSecurityChecksFailed,
        StatusCodes.BadCertificateUntrusted,
        StatusCodes.BadCertificateInvalid,
        StatusCodes.BadCertificateUriInvalid,
        StatusCodes.BadCertificateTimeInvalid,
        StatusCodes.BadCertificateUseNotAllowed,
        StatusCodes.BadCertificateHostNameInvalid,
        StatusCodes.BadCertificateRevoked,
        StatusCodes.BadCertificateIssuerRevocationUnknown,
        StatusCodes.BadCertificateRevocationUnknown,
        StatusCodes.BadSecurityPolicyRejected,
    }
)
"""Connect failures that mean the server refused the agent's application certificate."""


class _ChannelRefused(UaError):
    """The server answered OpenSecureChannel with an error, and asyncua (2.1) failed its own
    ``assert isinstance(..., OpenSecureChannelResponse)`` instead of raising the status code."""

    def __str__(self) -> str:
        return "the server refused to open a secure channel"


_LINK_ERRORS: tuple[type[BaseException], ...] = (OSError, ConnectionError, EOFError, UaError)


@dataclass(frozen=True, slots=True)
class _Target:
    """A configured tag and the node id it resolved to on the current connection (None: unresolved)."""

    tag: OpcUaTag
    node_id: ua.NodeId | None
    problem: str | None = None
    server_unit: str | None = None

    @property
    def unit(self) -> str | None:
        """The configured unit, else the one the server names in the node's EngineeringUnits."""
        return self.tag.unit if self.tag.unit is not None else self.server_unit


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
        self._targets: list[_Target] = []
        self._server_max_nodes_per_read = 0
        self._server_max_items_per_call = 0
        self._learned_max_nodes = 0  # set when the server refuses a Read as too large
        self.namespaces: tuple[str, ...] = ()
        """The server's namespace array as read at the last connect."""
        self._subscription: Subscription | None = None
        self._changes = ChangeQueue(config.effective_max_queued_samples)
        self._last_changes: dict[int, tuple[Sample, int]] = {}
        """Subscribe mode: each monitored item's last sample and when it arrived (ns), for max_age."""
        self._item_problems: dict[str, str] = {}
        self._link_problem: str | None = None
        self._warned: set[str] = set()
        self._last_failure: str | None = None
        self._own: OwnCertificate | None = None
        self._refusals_seen: set[str] = set()

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
        return self._changes.dropped

    @property
    def nodes_per_read(self) -> int:
        """Nodes per Read request (0: all): the least of the server's MaxNodesPerRead, the config's
        ``max_nodes_per_read`` and what the server turned out to accept."""
        limits = [
            n for n in (self._server_max_nodes_per_read, self._config.max_nodes_per_read, self._learned_max_nodes) if n
        ]
        return min(limits) if limits else 0

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
        client = self._new_client()
        self.report = SessionReport()
        if config.security.enabled and self._own is None:
            # Made on the first connect (RSA key generation) and loaded once (the key check costs
            # CPU): before the clock of the deadline starts.
            self._own = await prepare_own(self._target(), probe=self._probe)
        # One deadline for the whole sequence: endpoints, session, namespace lookup, units, subscription.
        deadline = asyncio.get_running_loop().time() + config.effective_connect_timeout
        await self._open_session(client, deadline)
        self._client = client
        try:
            async with until(deadline):
                await self._resolve(client)
                if config.mode == "subscribe":
                    await self._subscribe(client)
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
            _abort(client)
            self._state = ConnectionState.DOWN
            raise
        except BaseException:
            await self._drop_client()
            self._state = ConnectionState.DOWN
            raise
        self._state = ConnectionState.UP

    def _new_client(self) -> Client:
        config = self._config
        client = Client(
            config.endpoint,
            # Per request. Connect-time requests (a large CreateMonitoredItems) may take the whole
            # connect_timeout; a poll's Read is bounded by the connector's own timeout anyway.
            timeout=max(config.effective_timeout, config.effective_connect_timeout),
            # asyncua probes ServerState this often and gives the probe as long: at its default of
            # 1 s a busy server misses it and asyncua drops a healthy link (found by H4's bench).
            watchdog_intervall=max(5.0, config.effective_timeout),
        )
        client.name = client.description = f"edge-agent {config.id}"
        # Ask for a session that outlives a few polls but not a vanished agent by much (servers cap
        # it anyway; asyncua's default of an hour only earns a warning at every connect).
        client.session_timeout = int(max(60.0, 3 * config.interval) * 1000)
        return client

    def _target(self) -> Target:
        config = self._config
        login = Login(config.username, config.password, config.user_certificate, config.user_private_key)
        return Target(config.id, config.endpoint, config.security, login, config.effective_connect_timeout)

    async def _open_session(self, client: Client, deadline: float) -> None:
        """Endpoint, trust, socket, channel and session by ``deadline``; failures become ``ConnectError``."""
        config = self._config
        target = self._target()
        try:
            async with until(deadline):
                await secure(client, target, self.report, probe=self._probe, own=self._own)
                try:
                    await client.connect()
                except AssertionError as exc:
                    raise _ChannelRefused from exc
        except TimeoutError as exc:
            await self._discard(client)
            self._state = ConnectionState.DOWN
            raise ConnectError(
                config.id,
                f"no answer from {config.endpoint} within {config.effective_connect_timeout:g} s. "
                "Check the endpoint and that the server is running",
            ) from exc
        except ConnectError:
            await self._discard(client)
            self._state = ConnectionState.DOWN
            raise
        except _LINK_ERRORS as exc:
            await self._discard(client)
            self._state = ConnectionState.DOWN
            raise ConnectError(config.id, self._session_failure(exc, target)) from exc
        except asyncio.CancelledError:
            _abort(client)
            self._state = ConnectionState.DOWN
            raise

    def _session_failure(self, exc: BaseException, target: Target) -> str:
        """What went wrong opening the session, and the fix; never the password."""
        config = self._config
        report = self.report
        code = exc.code if isinstance(exc, UaStatusCodeError) else None
        if code in _LOGIN_CODES:
            if config.username is not None:
                problem = (
                    f"login as {config.username!r} was refused ({status_name(ua.StatusCode(code))}). "
                    "Fix: check username and password (the password is never shown)"
                )
            elif config.user_certificate is not None:
                problem = (
                    f"login {report.login or target.login.describe()} was refused ({status_name(ua.StatusCode(code))})."
                    " Fix: register that user certificate on the server (its user certificate store), or check "
                    "user_certificate and user_private_key"
                )
            else:
                problem = (
                    f"the server refused an anonymous session ({status_name(ua.StatusCode(code))}). "
                    "Fix: set username and password, or user_certificate and user_private_key"
                )
            report.login_problem = problem
            return f"{config.endpoint}: {problem}"
        own = report.own
        if isinstance(exc, _ChannelRefused) and own is not None:
            return (
                f"{config.endpoint}: the server refused to open a secure channel (asyncua does not pass on its "
                "status code; the usual cause is that the server does not trust the agent's certificate). "
                f"Fix: trust it on the server: {own.cert_path} (ApplicationUri {own.application_uri}, SHA-256 "
                f"{own.fingerprint}); most servers keep it in their rejected-certificates folder until it is moved"
            )
        if code in _CERTIFICATE_CODES and own is not None:
            return (
                f"{config.endpoint}: the server refused the agent's certificate ({status_name(ua.StatusCode(code))}). "
                f"Fix: trust it on the server: {own.cert_path} (ApplicationUri {own.application_uri}, SHA-256 "
                f"{own.fingerprint}); most servers keep it in their rejected-certificates folder until it is moved"
            )
        if isinstance(exc, UaError) and "certificate mismatch" in str(exc).lower():
            return (
                f"{config.endpoint}: the server presented a different certificate when opening the session than "
                "in its endpoint description, so it was refused. Fix: check the server's certificate configuration"
            )
        hint = ""
        if own is not None and isinstance(exc, (ConnectionError, EOFError)):
            hint = (
                f". If this persists, the server may not trust the agent's certificate: trust {own.cert_path} "
                f"(SHA-256 {own.fingerprint}) on the server"
            )
        return f"cannot connect to {config.endpoint}: {_describe(exc)}{hint}"

    async def _resolve(self, client: Client) -> None:
        """Read the namespace array and MaxNodesPerRead in one Read, then map every tag to a NodeId."""
        namespace_array, max_nodes, max_items = await self._read_service(
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
        self._server_max_nodes_per_read = _limit(max_nodes)
        self._server_max_items_per_call = _limit(max_items)
        targets = []
        for tag in self._config.tags:
            try:
                targets.append(_Target(tag, resolve_node(tag.node, self.namespaces)))
            except LookupError as exc:
                self._warn_once(f"tag {tag.name!r}: {exc}")
                targets.append(_Target(tag, None, str(exc)))
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
            _log.debug("machine %r: no units from the server: %s", self.machine_id, _describe(exc))
            return
        for index, unit in zip(wanted, found, strict=True):
            if unit:
                self._targets[index] = replace(self._targets[index], server_unit=unit)

    async def _engineering_units(self, client: Client, targets: Sequence[_Target]) -> list[str | None]:
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
            await self._read_service(
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
            return self._flush(client)
        return await self._poll(client)

    async def _poll(self, client: Client) -> Batch:
        """One Read service call per chunk of nodes, then one sample per tag."""
        polled_at = now_ns()
        readable = [t for t in self._targets if t.node_id is not None]
        results: list[ua.DataValue] = []
        if readable:
            node_ids = [t.node_id for t in readable if t.node_id is not None]
            results = await self._read_service(
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

    async def _subscribe(self, client: Client) -> None:
        """One subscription, one monitored item per resolved node; failed items are remembered per tag."""
        config = self._config
        self._changes.clear()
        self._last_changes = {}
        self._item_problems = {}
        self._link_problem = None
        handler = _ChangeHandler(self)
        try:
            async with within(config.effective_connect_timeout):
                subscription = await client.create_subscription(config.interval * 1000, handler)
                self._subscription = subscription
                requests = [
                    self._monitored_item(handle, target)
                    for handle, target in enumerate(self._targets)
                    if target.node_id is not None
                ]
                results = []
                for chunk in chunked(requests, self._server_max_items_per_call):
                    results.extend(await subscription.create_monitored_items(chunk))
        except TimeoutError as exc:
            raise ConnectError(self.machine_id, "no answer to CreateSubscription / CreateMonitoredItems") from exc
        except UaStatusCodeError as exc:
            raise DeviceError(self.machine_id, f"the server refused the subscription: {_describe(exc)}") from exc
        except _LINK_ERRORS as exc:
            raise ConnectError(self.machine_id, f"connection lost while subscribing: {_describe(exc)}") from exc
        for request, result in zip(requests, results, strict=True):
            if isinstance(result, ua.StatusCode):
                target = self._targets[request.RequestedParameters.ClientHandle]
                reason = status_name(result)
                if result.value == StatusCodes.BadNodeIdUnknown:
                    reason += f": the server has no node {target.tag.node}. Fix: check the node id in an OPC UA browser"
                self._item_problems[target.tag.name] = reason
                self._warn_once(f"tag {target.tag.name!r} cannot be monitored: {reason}")

    def _monitored_item(self, handle: int, target: _Target) -> ua.MonitoredItemCreateRequest:
        config = self._config
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

    def _on_change(self, handle: int, data_value: ua.DataValue) -> None:
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
        if self._changes.put(sample):
            self._warn_once(
                f"more than {self._config.effective_max_queued_samples} changes waited for a read; dropping the oldest "
                "(counted in dropped_samples). Fix: raise max_queued_samples, or read more often"
            )

    def _on_status(self, status: ua.StatusCode) -> None:
        """The server says the subscription is gone (e.g. BadTimeout): the next read reports it."""
        if not status.is_good():
            client = self._client
            if client is not None and client.uaclient.state is not UaClientState.CONNECTED:
                # asyncua tells subscriptions BadShutdown when it lost the link itself (server
                # killed, network cut): say what happened rather than blame the server.
                self._link_problem = f"connection lost ({status_name(status)}). The runtime reconnects"
            else:
                self._link_problem = f"the server ended the subscription ({status_name(status)})"

    def _flush(self, client: Client) -> Batch:
        """The queued changes, plus a bad sample per tag that cannot be monitored."""
        polled_at = now_ns()
        if client.uaclient.state is not UaClientState.CONNECTED or self._link_problem is not None:
            self._state = ConnectionState.DOWN
            raise ConnectError(self.machine_id, self._link_problem or "connection lost. The runtime reconnects")
        samples = self._changes.take_all()
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
        self._state = ConnectionState.UP
        return Batch(self.machine_id, tuple(samples), polled_at_ns=polled_at)

    async def _read_service(
        self,
        client: Client,
        node_ids: Sequence[ua.NodeId],
        timestamps: ua.TimestampsToReturn,
        time_limit: float,
    ) -> list[ua.DataValue]:
        """Read the Value attribute of ``node_ids``, chunked by MaxNodesPerRead, translating failures."""
        results: list[ua.DataValue] = []
        pending = list(node_ids)
        try:
            async with within(time_limit):
                while pending:
                    size = self.nodes_per_read or len(pending)
                    chunk = pending[:size]
                    try:
                        answer = await client.uaclient.read(self._read_parameters(chunk, timestamps))
                    except UaStatusCodeError as exc:
                        if exc.code != StatusCodes.BadTooManyOperations or len(chunk) == 1:
                            raise
                        # The server enforces a lower limit than it announces: halve the chunk and go on.
                        self._learned_max_nodes = len(chunk) // 2
                        self._warn_once(
                            f"the server refused a Read of {len(chunk)} nodes (BadTooManyOperations), more than "
                            "it announces; reading fewer nodes per request from now on. Fix: set "
                            "max_nodes_per_read to what the server accepts"
                        )
                        continue
                    if len(answer) != len(chunk):
                        raise DeviceError(
                            self.machine_id,
                            f"the server answered {len(answer)} results for {len(chunk)} nodes",
                        )
                    results.extend(answer)
                    pending = pending[len(chunk) :]
        except TimeoutError as exc:
            self._state = ConnectionState.DOWN
            raise ReadTimeout(self.machine_id, f"no answer to Read within {time_limit:g} s") from exc
        except UaStatusCodeError as exc:
            self._state = ConnectionState.DOWN
            if exc.code in _LOST_LINK_CODES:
                raise ConnectError(self.machine_id, f"session lost: {_describe(exc)}") from exc
            raise DeviceError(self.machine_id, f"the server refused the Read: {_describe(exc)}") from exc
        except _LINK_ERRORS as exc:
            self._state = ConnectionState.DOWN
            raise ConnectError(self.machine_id, f"connection lost: {_describe(exc)}") from exc
        return results

    @staticmethod
    def _read_parameters(node_ids: Sequence[ua.NodeId], timestamps: ua.TimestampsToReturn) -> ua.ReadParameters:
        params = ua.ReadParameters()
        params.MaxAge = 0
        params.TimestampsToReturn = timestamps
        params.NodesToRead = [ua.ReadValueId(NodeId=n, AttributeId=AttributeIds.Value) for n in node_ids]
        return params

    async def _discard(self, client: Client) -> None:
        """Tear ``client`` down as far as it got; never raises."""
        try:
            async with within(self._config.effective_connect_timeout):
                await client.disconnect()
        except Exception:  # noqa: BLE001 - teardown of a failed link must never raise
            _log.debug("machine %r: error while disconnecting", self.machine_id, exc_info=True)
        try:
            client.disconnect_socket()
        except Exception:  # noqa: BLE001
            _log.debug("machine %r: error while closing the socket", self.machine_id, exc_info=True)

    async def _drop_client(self) -> None:
        client, self._client = self._client, None
        self._subscription = None
        if client is not None:
            await self._discard(client)

    async def close(self) -> None:
        """Close the session and the connection. Idempotent; never raises."""
        await self._drop_client()
        self._state = ConnectionState.CLOSED


class _ChangeHandler:
    """asyncua's subscription callbacks, forwarded to the connector."""

    def __init__(self, connector: OpcUaConnector) -> None:
        self._connector = connector

    def datachange_notification(self, _node: Any, _value: Any, data: DataChangeNotif) -> None:
        item = data.monitored_item
        self._connector._on_change(int(item.ClientHandle), item.Value)

    def status_change_notification(self, status: ua.StatusChangeNotification) -> None:
        self._connector._on_status(status.Status)


def _limit(data_value: ua.DataValue) -> int:
    """An OperationLimits value: the number, or 0 (no limit) when the server has none."""
    value = data_value.Value.Value if data_value.Value is not None else None
    good = (data_value.StatusCode or ua.StatusCode()).is_good()
    return value if good and isinstance(value, int) and not isinstance(value, bool) and value > 0 else 0


def _abort(client: Client) -> None:
    """Drop a half-open link at once, without waiting on the server (we are being cancelled)."""
    try:
        client.disconnect_socket()
    except Exception:  # noqa: BLE001 - nothing useful to do with a failure here
        _log.debug("error while dropping a half-open OPC UA link", exc_info=True)


def _describe(exc: BaseException) -> str:
    text = str(exc).strip()
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__
