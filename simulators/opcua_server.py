"""The OPC UA face of a simulation: an asyncua server whose values the plant updates.

Address space: ``Objects/Machines/<machine>`` objects in namespace ``urn:edge-agent:simulator``,
a Double variable per signal (string node id ``<machine>.<signal>``) with an EngineeringUnits
property, and status variables ``<machine>.state``, ``.state_code``, ``.parts_count``.

Variables are not writable; every Write and Call service request from a client is counted
(``write_count``) so tests can prove the agent never writes. The server's own value updates go
straight to the address space and are not counted.

Namespace index: the simulator's namespace is normally index 2 (the first after the standard
ones). ``extra_namespaces=N`` registers N empty placeholder namespaces before it, so it lands at
index 2 + N; change ``extra_namespaces`` while the server is stopped and ``start`` again to model
a real server that comes back from a restart (or a firmware update) with its namespace moved.
Clients that address nodes by namespace URI (``nsu=``) find them again; ``ns=2;...`` ids then
name nodes that do not exist.

Security: None by default; ``security="Basic256Sha256"`` offers only Basic256Sha256 (Sign and
SignAndEncrypt) with a self-signed certificate made at start (``certificate``, DER), and
``users={"name": "password"}`` admits only those users (no anonymous sessions).
"""

from __future__ import annotations

import asyncio
import logging
import random
from collections.abc import Iterable, Mapping
from copy import copy
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any, cast

from asyncua import ua
from asyncua.common.callback import CallbackType
from asyncua.server.server import Server
from asyncua.ua.attribute_ids import AttributeIds
from asyncua.ua.object_ids import ObjectIds
from asyncua.ua.status_codes import StatusCodes

from simulators.opcua_security import (
    SECURITY_MODES,
    PasswordUsers,
    SecurityMode,
    identity_tokens,
    make_certificate,
)
from simulators.physics import MachineState
from simulators.plant import Reading
from simulators.register_map import ENDPOINT_PATH, NAMESPACE_URI

log = logging.getLogger(__name__)

_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
APPLICATION_URI = "urn:edge-agent:simulator:server"
PLACEHOLDER_NAMESPACE_URI = "urn:edge-agent:simulator:placeholder:{number}"
"""Namespaces registered before the simulator's own with ``extra_namespaces`` (they hold no nodes)."""
_UNECE_URI = "http://www.opcfoundation.org/UA/units/un/cefact"
_UNECE_CODES = {
    "m3/h": "MQH",
    "bar": "BAR",
    "A": "AMP",
    "°C": "CEL",
    "mm/s": "C16",
    "s": "SEC",
    "rpm": "RPM",
    "%": "P1",
    "m/s": "MTS",
    "kW": "KWT",
}


def to_datetime(timestamp_ns: int) -> datetime:
    """UTC datetime of a nanosecond timestamp, truncated to whole microseconds (exact, no float)."""
    return _EPOCH + timedelta(microseconds=timestamp_ns // 1000)


def eu_information(unit: str) -> ua.EUInformation:
    """EngineeringUnits for a unit text: UNECE code where we know one, else display name only."""
    code = _UNECE_CODES.get(unit)
    unit_id = -1
    if code is not None:
        unit_id = 0
        for char in code:
            unit_id = (unit_id << 8) | ord(char)
    return ua.EUInformation(
        NamespaceUri=ua.String(_UNECE_URI),
        UnitId=ua.Int32(unit_id),
        DisplayName=ua.LocalizedText(unit),
        Description=ua.LocalizedText(unit),
    )


def string_node(identifier: str, namespace_index: int) -> ua.NodeId:
    """A string node id (asyncua's constructor wants its own str/int subclasses)."""
    return ua.NodeId(ua.String(identifier), ua.Int16(namespace_index))


def status(code: int) -> ua.StatusCode:
    """A StatusCode from one of ``asyncua.ua.status_codes.StatusCodes``."""
    return ua.StatusCode(ua.UInt32(code))


@dataclass(slots=True)
class MachineFaults:
    """Protocol-level misbehaviour for one machine's nodes (see ``Simulation.inject_protocol_fault``)."""

    latency_s: float = 0.0
    stale: bool = False
    status_code: int | None = None
    clock_offset_ns: int = 0
    """Added to SourceTimestamps: a machine whose clock is wrong (ServerTimestamp stays right)."""
    probability: float = 1.0
    """Share of Reads that get the latency and of updates that get the status (intermittent faults)."""


class OpcUaSimServer:
    """An asyncua server serving one plant on ``host:port`` (port 0: ephemeral, see ``.port``)."""

    def __init__(
        self,
        host: str,
        port: int,
        machines: Iterable[tuple[str, list[tuple[str, str]]]],
        seed: int = 1,
        *,
        descriptions: Mapping[str, str] | None = None,
        security: SecurityMode = "None",
        users: Mapping[str, str] | None = None,
        extra_namespaces: int = 0,
    ) -> None:
        if security not in SECURITY_MODES:
            raise ValueError(f"security must be one of {SECURITY_MODES}, got {security!r}")
        self.extra_namespaces = check_extra_namespaces(extra_namespaces)
        """Placeholder namespaces registered before the simulator's own at the next ``start``."""
        self.host = host
        self.security: SecurityMode = security
        self._users = dict(users) if users else None
        self.certificate: bytes | None = None
        """The server's application certificate (DER) when security is on, for clients to trust."""
        self._rng = random.Random(f"opcua-faults-{seed}")
        self._requested_port = port
        self._machines = [(mid, list(signals)) for mid, signals in machines]
        self._descriptions = dict(descriptions or {})
        """Node id text (``pump-1``, ``pump-1.flow``) -> Description attribute, for people browsing."""
        self._server: Any = None
        self._nodes: dict[tuple[str, str], Any] = {}
        self._port: int | None = None
        self.write_count = 0
        self._private_key: bytes | None = None
        self._clock_written: datetime | None = None
        self.faults: dict[str, MachineFaults] = {mid: MachineFaults() for mid, _ in self._machines}
        """Protocol faults per machine: Read latency, stale values, a bad status code on its signals."""
        self._namespace_index = -1

    @property
    def port(self) -> int:
        """The port actually bound (valid once started)."""
        if self._port is None:
            raise RuntimeError("the OPC UA server is not started")
        return self._port

    @property
    def endpoint(self) -> str:
        """``opc.tcp://host:port/edge-sim/``."""
        return f"opc.tcp://{_url_host(self.host)}:{self.port}{ENDPOINT_PATH}"

    @property
    def namespace_uri(self) -> str:
        """The namespace of every simulator node."""
        return NAMESPACE_URI

    @property
    def namespace_index(self) -> int:
        """The index of ``namespace_uri`` in the running server's namespace array (2 + extra_namespaces)."""
        if self._server is None:
            raise RuntimeError("the OPC UA server is not started")
        return self._namespace_index

    async def start(self) -> None:
        """Build the address space and listen."""
        server = Server(user_manager=PasswordUsers(self._users) if self._users else None)
        await server.init()
        port = self._port if self._port is not None else self._requested_port  # a restart keeps its port
        server.set_endpoint(f"opc.tcp://{_url_host(self.host)}:{port}{ENDPOINT_PATH}")
        self._clock_written = None
        server.set_server_name("edge-agent machine simulator")
        await self._secure(server)
        # asyncua's own clock task sleeps a whole second and makes every stop() wait for it;
        # publish() keeps ServerStatus.CurrentTime up to date instead (see _tick_clock).
        server.disable_clock(True)
        await server.set_application_uri(APPLICATION_URI)
        self.extra_namespaces = check_extra_namespaces(self.extra_namespaces)
        for number in range(1, self.extra_namespaces + 1):
            await server.register_namespace(PLACEHOLDER_NAMESPACE_URI.format(number=number))
        idx = await server.register_namespace(NAMESPACE_URI)
        self._namespace_index = idx
        folder = await server.nodes.objects.add_folder(string_node("Machines", idx), ua.QualifiedName("Machines", idx))
        for machine_id, signals in self._machines:
            obj = await folder.add_object(string_node(machine_id, idx), ua.QualifiedName(machine_id, idx))
            await self._describe(obj, machine_id)
            for name, unit in signals:
                var = await obj.add_variable(
                    string_node(f"{machine_id}.{name}", idx), ua.QualifiedName(name, idx), 0.0, ua.VariantType.Double
                )
                await self._describe(var, f"{machine_id}.{name}")
                await var.add_property(
                    string_node(f"{machine_id}.{name}.EngineeringUnits", idx),
                    ua.QualifiedName("EngineeringUnits", 0),
                    eu_information(unit),
                    ua.VariantType.ExtensionObject,
                    ObjectIds.EUInformation,
                )
                self._nodes[(machine_id, name)] = var.nodeid
            for name, value, vtype in (
                ("state", MachineState.RUNNING.name.lower(), ua.VariantType.String),
                ("state_code", int(MachineState.RUNNING), ua.VariantType.UInt16),
                ("parts_count", 0, ua.VariantType.UInt32),
            ):
                var = await obj.add_variable(
                    string_node(f"{machine_id}.{name}", idx), ua.QualifiedName(name, idx), value, vtype
                )
                self._nodes[(machine_id, name)] = var.nodeid
        server.subscribe_server_callback(CallbackType.PreWrite, self._on_write)
        server.subscribe_server_callback(CallbackType.PreRead, self._on_read)
        _count_calls(server, self)
        await server.start()
        self._server = server
        if server.bserver is None:
            raise RuntimeError("asyncua started without a binary server")
        self._port = int(server.bserver.port)
        log.info("OPC UA simulator listening on %s", self.endpoint)

    @property
    def running(self) -> bool:
        """Whether the server is listening."""
        return self._server is not None

    async def _describe(self, node: Any, key: str) -> None:
        text = self._descriptions.get(key)
        if text:
            await node.write_attribute(AttributeIds.Description, ua.DataValue(ua.Variant(ua.LocalizedText(text))))

    async def _secure(self, server: Any) -> None:
        """Security policy, certificate and identity tokens, as configured."""
        if self.security == "Basic256Sha256":
            if self.certificate is None or self._private_key is None:  # made once, kept across restarts
                self.certificate, self._private_key = await asyncio.to_thread(
                    make_certificate, APPLICATION_URI, self.host
                )
            await server.load_certificate(self.certificate, format="der")
            await server.load_private_key(self._private_key, format="der")
            server.set_security_policy(
                [ua.SecurityPolicyType.Basic256Sha256_SignAndEncrypt, ua.SecurityPolicyType.Basic256Sha256_Sign]
            )
        else:
            server.set_security_policy([ua.SecurityPolicyType.NoSecurity])
        if self._users:
            server.set_identity_tokens(identity_tokens(self._users))

    async def stop(self) -> None:
        """Close client connections and stop listening. Idempotent; ``start`` again reuses the port."""
        server, self._server = self._server, None
        if server is not None:
            await server.stop()

    async def _on_write(self, event: Any, _dispatcher: Any) -> None:
        if event.is_external:
            self.write_count += 1

    async def _on_read(self, event: Any, _dispatcher: Any) -> None:
        """Delay a client's Read by the largest latency among the machines whose nodes it reads."""
        if not event.is_external:
            return
        delay = 0.0
        for item in getattr(event.request_params, "NodesToRead", None) or ():
            node = item.NodeId
            if node.NamespaceIndex == self._namespace_index and isinstance(node.Identifier, str):
                faults = self.faults.get(node.Identifier.split(".", 1)[0])
                if faults is not None and faults.latency_s > delay and self._hit(faults):
                    delay = faults.latency_s
        if delay > 0:
            await asyncio.sleep(delay)

    async def publish(self, readings: dict[str, Reading], timestamp_ns: int) -> list[str]:
        """Set every variable of the given machines, all with the same source timestamp.

        Signals carry the machine's injected status code (Good unless a protocol fault set one);
        status variables are always Good. Machines with stale values are skipped. Returns the ids
        of the machines whose values were published.
        """
        if self._server is None:
            return []
        server_stamp = to_datetime(timestamp_ns)
        await self._tick_clock(server_stamp)
        published = []
        for machine_id, reading in readings.items():
            faults = self.faults[machine_id]
            if faults.stale:
                continue
            published.append(machine_id)
            stamp = (to_datetime(self.source_ns(machine_id, timestamp_ns)), server_stamp)
            bad = faults.status_code is not None and self._hit(faults)
            code = status(faults.status_code if bad and faults.status_code is not None else StatusCodes.Good)
            for name, value in reading.values.items():
                await self._write(machine_id, name, ua.Variant(value, ua.VariantType.Double), stamp, code)
            good = status(StatusCodes.Good)
            await self._write(
                machine_id, "state", ua.Variant(reading.state.name.lower(), ua.VariantType.String), stamp, good
            )
            await self._write(
                machine_id, "state_code", ua.Variant(int(reading.state), ua.VariantType.UInt16), stamp, good
            )
            count = reading.parts_count & 0xFFFFFFFF
            await self._write(machine_id, "parts_count", ua.Variant(count, ua.VariantType.UInt32), stamp, good)
        return published

    async def _write(
        self, machine_id: str, name: str, variant: ua.Variant, stamps: tuple[datetime, datetime], code: ua.StatusCode
    ) -> None:
        # ua.DateTime is asyncua's datetime subclass; a datetime encodes alike
        source, server = (cast(ua.DateTime, stamp) for stamp in stamps)
        value = ua.DataValue(variant, StatusCode=code, SourceTimestamp=source, ServerTimestamp=server)
        await self._server.write_attribute_value(self._nodes[(machine_id, name)], value)

    def source_ns(self, machine_id: str, timestamp_ns: int) -> int:
        """The SourceTimestamp served for an update of one machine (its clock offset applied)."""
        return timestamp_ns + self.faults[machine_id].clock_offset_ns

    def _hit(self, faults: MachineFaults) -> bool:
        return faults.probability >= 1.0 or self._rng.random() < faults.probability

    async def _tick_clock(self, now: datetime) -> None:
        """Server_ServerStatus.CurrentTime, at most once per simulated-update second (as asyncua does)."""
        if self._clock_written is not None and (now - self._clock_written).total_seconds() < 1.0:
            return
        self._clock_written = now
        status_node = self._server.get_node(ObjectIds.Server_ServerStatus)
        status_value = copy(await status_node.read_value())
        status_value.CurrentTime = now
        await status_node.write_value(status_value)
        await self._server.get_node(ObjectIds.Server_ServerStatus_CurrentTime).write_value(
            ua.Variant(now, ua.VariantType.DateTime)
        )

    async def expire_sessions(self) -> int:
        """End every client's session on the server side while its TCP link stays open.

        What a server does when a session times out (a client paused longer than its session
        timeout, a server-side reset): the next request of that client is refused. asyncua answers
        BadUserAccessDenied where other servers say BadSessionIdInvalid; a client must treat
        either as "start a new session". Returns how many sessions were ended.
        """
        if self._server is None:
            return 0
        ended = 0
        for transport in list(self._server.iserver.asyncio_transports):
            processor = getattr(transport.get_protocol(), "processor", None)
            session = getattr(processor, "session", None)
            if processor is None or session is None:
                continue
            await session.close_session(True)
            processor.session = None
            ended += 1
        return ended

    def drop_connections(self) -> int:
        """Close every client connection (the listener stays up); returns how many were closed."""
        if self._server is None:
            return 0
        transports = list(self._server.iserver.asyncio_transports)
        for transport in transports:
            transport.close()
        return len(transports)


def check_extra_namespaces(count: object) -> int:
    """``count`` if it is a usable number of placeholder namespaces, else ``ValueError`` with the fix."""
    if isinstance(count, bool) or not isinstance(count, int) or not 0 <= count <= 1000:
        raise ValueError(
            f"extra_namespaces must be a whole number from 0 to 1000, got {count!r}. "
            "Fix: e.g. 3 puts the simulator's namespace at index 5"
        )
    return count


def _count_calls(server: Any, owner: OpcUaSimServer) -> None:
    """Count Call service requests: asyncua has no server callback for them, so wrap the service."""
    service = server.iserver.method_service
    original = service.call

    async def counting_call(methods: Any) -> Any:
        owner.write_count += 1
        return await original(methods)

    service.call = counting_call


def _url_host(host: str) -> str:
    return f"[{host}]" if ":" in host else host
