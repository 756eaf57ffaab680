"""A small real OPC UA server for tests: values of every kind, statuses, a low MaxNodesPerRead.

The simulator serves Doubles with good status; this server serves what the connector must also
handle (integers, text, arrays, uncertain and bad statuses, old timestamps) and records the size
of every Read request a client sends, so tests can prove how a poll was chunked.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from types import TracebackType
from typing import Any, Self, cast

from asyncua import ua
from asyncua.common.callback import CallbackType
from asyncua.common.utils import ServiceError
from asyncua.crypto.permission_rules import User, UserRole
from asyncua.server.server import Server
from asyncua.server.user_managers import UserManager
from asyncua.ua.object_ids import ObjectIds
from asyncua.ua.status_codes import StatusCodes

NAMESPACE = "urn:edge-agent:test-device"
ONE_HOUR = timedelta(hours=1)

# name: (value, variant type, status code, age of the source timestamp at each reset)
NODES: dict[str, tuple[Any, ua.VariantType, int, timedelta]] = {
    "double": (1.5, ua.VariantType.Double, StatusCodes.Good, timedelta(0)),
    "int": (-7, ua.VariantType.Int32, StatusCodes.Good, timedelta(0)),
    "big": (2**63 + 5, ua.VariantType.UInt64, StatusCodes.Good, timedelta(0)),
    "flag": (True, ua.VariantType.Boolean, StatusCodes.Good, timedelta(0)),
    "text": ("hello", ua.VariantType.String, StatusCodes.Good, timedelta(0)),
    "label": (ua.LocalizedText("Running", "en"), ua.VariantType.LocalizedText, StatusCodes.Good, timedelta(0)),
    "array": ([1.0, 2.0, 3.0], ua.VariantType.Double, StatusCodes.Good, timedelta(0)),
    "uncertain": (4.5, ua.VariantType.Double, StatusCodes.UncertainLastUsableValue, timedelta(0)),
    "broken": (0.0, ua.VariantType.Double, StatusCodes.BadSensorFailure, timedelta(0)),
    "old": (9.0, ua.VariantType.Double, StatusCodes.Good, ONE_HOUR),
}
COUNTER_NODES = [f"n{i}" for i in range(10)]


class _Passwords(UserManager):
    """Accepts exactly the given user names and passwords; no anonymous sessions."""

    def __init__(self, users: dict[str, str]) -> None:
        self.users = users

    def get_user(
        self, iserver: Any, username: str | None = None, password: str | None = None, certificate: Any = None
    ) -> User | None:
        if username is not None and self.users.get(username) == password:
            return User(role=UserRole.User, name=username)
        return None


class OpcUaTestDevice:
    """``async with OpcUaTestDevice(max_nodes_per_read=4) as device: device.endpoint``.

    With ``users``, sessions need one of those user names and passwords.
    """

    def __init__(
        self, max_nodes_per_read: int = 0, users: dict[str, str] | None = None, enforce_max_nodes: int = 0
    ) -> None:
        self._max_nodes_per_read = max_nodes_per_read
        self._enforce_max_nodes = enforce_max_nodes
        self._users = users
        self._server: Server | None = None
        self._node_ids: dict[str, ua.NodeId] = {}
        self.read_sizes: list[int] = []
        self.monitored_item_calls: list[int] = []
        self.write_count = 0
        self.endpoint = ""

    def node(self, name: str) -> str:
        """The node id string of one of this server's variables."""
        return f"nsu={NAMESPACE};s={name}"

    async def __aenter__(self) -> Self:
        server = Server(user_manager=_Passwords(self._users) if self._users else None)
        await server.init()
        server.set_endpoint("opc.tcp://127.0.0.1:0/test/")
        server.set_security_policy([ua.SecurityPolicyType.NoSecurity])
        server.disable_clock(True)  # asyncua's clock task makes stop() wait up to a second
        if self._users:
            server.set_security_IDs(["Username"])
        idx = ua.Int16(await server.register_namespace(NAMESPACE))
        folder = await server.nodes.objects.add_folder(
            ua.NodeId(ua.String("Device"), idx), ua.QualifiedName("Device", idx)
        )
        for name, (value, vtype, _status, _when) in NODES.items():
            var = await folder.add_variable(ua.NodeId(ua.String(name), idx), ua.QualifiedName(name, idx), value, vtype)
            self._node_ids[name] = var.nodeid
        for i, name in enumerate(COUNTER_NODES):
            var = await folder.add_variable(ua.NodeId(ua.String(name), idx), ua.QualifiedName(name, idx), float(i))
            self._node_ids[name] = var.nodeid
        server.subscribe_server_callback(CallbackType.PreRead, self._on_read)
        if self._enforce_max_nodes:
            _refuse_large_reads(server, self._enforce_max_nodes)
        _count_monitored_items(server, self)
        server.subscribe_server_callback(CallbackType.PreWrite, self._on_write)
        await server.start()
        self._server = server
        await self.reset()
        if self._max_nodes_per_read:
            for limit in (
                ObjectIds.Server_ServerCapabilities_OperationLimits_MaxNodesPerRead,
                ObjectIds.Server_ServerCapabilities_OperationLimits_MaxMonitoredItemsPerCall,
            ):
                await server.write_attribute_value(
                    ua.NodeId(ua.Int32(limit)),
                    ua.DataValue(ua.Variant(self._max_nodes_per_read, ua.VariantType.UInt32)),
                )
        assert server.bserver is not None
        self.endpoint = f"opc.tcp://127.0.0.1:{server.bserver.port}/test/"
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        server, self._server = self._server, None
        if server is not None:
            await server.stop()

    async def reset(self) -> None:
        """Every value as at start, and the request counters at zero."""
        now = datetime.now(UTC)
        for name, (value, vtype, status, age) in NODES.items():
            await self.set(name, value, vtype, status, now - age)
        for i, name in enumerate(COUNTER_NODES):
            await self.set(name, float(i))
        self.read_sizes.clear()
        self.monitored_item_calls.clear()
        self.write_count = 0

    async def set(
        self,
        name: str,
        value: Any,
        vtype: ua.VariantType = ua.VariantType.Double,
        status: int = StatusCodes.Good,
        when: datetime | None = None,
    ) -> None:
        """Change a value on the server side (not a client write)."""
        assert self._server is not None
        # ua.DateTime is asyncua's marker subclass of datetime; a plain datetime encodes alike
        stamp = cast(ua.DateTime, when or datetime.now(UTC))
        data = ua.DataValue(
            ua.Variant(value, vtype),
            StatusCode=ua.StatusCode(ua.UInt32(status)),
            SourceTimestamp=stamp,
            ServerTimestamp=stamp,
        )
        await self._server.write_attribute_value(self._node_ids[name], data)

    async def _on_read(self, event: Any, _dispatcher: Any) -> None:
        if event.is_external:
            self.read_sizes.append(len(event.request_params.NodesToRead))

    async def _on_write(self, event: Any, _dispatcher: Any) -> None:
        if event.is_external:
            self.write_count += 1


def _refuse_large_reads(server: Server, limit: int) -> None:
    """Answer a Read of more than ``limit`` nodes with BadTooManyOperations, without announcing the limit."""
    service = server.iserver.attribute_service
    original = service.read

    def limited_read(params: ua.ReadParameters) -> list[ua.DataValue]:
        if len(params.NodesToRead) > limit:
            raise ServiceError(StatusCodes.BadTooManyOperations)
        return original(params)

    service.read = limited_read  # type: ignore[method-assign]


def _count_monitored_items(server: Server, device: OpcUaTestDevice) -> None:
    """Record the size of every CreateMonitoredItems call (asyncua has no callback for it)."""
    service = server.iserver.subscription_service
    original = service.create_monitored_items

    async def counting(params: ua.CreateMonitoredItemsParameters) -> Any:
        device.monitored_item_calls.append(len(params.ItemsToCreate))
        return await original(params)

    service.create_monitored_items = counting  # type: ignore[method-assign]
