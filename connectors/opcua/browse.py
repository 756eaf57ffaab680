"""Browse an OPC UA server read-only: every variable below Objects, with its type, unit and value.

``edge-agent discover opc.tcp://…`` shows what a server holds before anyone writes its config.
Strictly read-only: Browse, BrowseNext, Read and TranslateBrowsePathsToNodeIds (plus the session
services). The session is opened as the agent opens its own (``handshake.py``): the same
security choice and trust store, so a server discover could browse is one the agent can read.
Requests go out in batches (100 nodes a Browse, 200 a Read) because a server with thousands of
variables would otherwise take one round trip each.
"""

from __future__ import annotations

import asyncio
import contextlib
import fnmatch
import re
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING, Any

from connectors.discovery import DiscoverError, Progress

if TYPE_CHECKING:
    from connectors.opcua.config import OpcUaSecurity
    from connectors.opcua.handshake import SessionReport


@dataclass
class Variable:
    """One variable found by the browse."""

    node: str
    """The node id, ``nsu=<uri>;...`` for namespaces other than 0."""
    path: list[str]
    """Browse names from below Objects down to the variable."""
    data_type: str = "?"
    unit: str | None = None
    value: str = ""
    problem: str | None = None
    """Why the variable is left out of the generated config (None: it is in)."""

    @property
    def browse_path(self) -> str:
        return "/".join(self.path)


def _node_text(node_id: Any, namespaces: Sequence[str]) -> str:
    text: str = node_id.to_string()
    index = int(node_id.NamespaceIndex)
    if index == 0 or index >= len(namespaces):
        return text
    return re.sub(r"^ns=\d+;", f"nsu={namespaces[index]};", text)


def _value_text(value: Any) -> str:
    from asyncua import ua

    if isinstance(value, ua.LocalizedText):
        return value.Text or ""
    if isinstance(value, datetime):
        return value.isoformat()
    if isinstance(value, float):
        return f"{value:.6g}"
    if isinstance(value, list):
        return f"[array of {len(value)}]"
    if isinstance(value, ua.ExtensionObject) or hasattr(value, "ua_types"):
        return f"<{type(value).__name__}>"
    text = str(value)
    return text if len(text) <= 40 else text[:37] + "..."


class _Browser:
    """One read-only OPC UA session: Browse/BrowseNext, Read and TranslateBrowsePathsToNodeIds."""

    def __init__(self, client: Any, limit: float, progress: Progress) -> None:
        self.client = client
        self.limit = limit
        self.progress = progress
        self.namespaces: list[str] = []

    async def call(self, coro: Any) -> Any:
        """One service call, bounded by the per-request time limit."""
        async with asyncio.timeout(self.limit):
            return await coro

    async def read(self, node_ids: Sequence[Any], attribute: int) -> list[Any]:
        """Read one attribute of many nodes, 200 per request."""
        from asyncua import ua

        out: list[Any] = []
        for start in range(0, len(node_ids), 200):
            params = ua.ReadParameters()
            params.TimestampsToReturn = ua.TimestampsToReturn.Neither
            params.NodesToRead = [
                ua.ReadValueId(NodeId=n, AttributeId=ua.UInt32(attribute)) for n in node_ids[start : start + 200]
            ]
            out.extend(await self.call(self.client.uaclient.read(params)))
        return out

    async def references(self, batch: Sequence[Any]) -> list[list[Any]]:
        """The forward hierarchical references (objects and variables) of each node in ``batch``."""
        from asyncua import ua
        from asyncua.ua.object_ids import ObjectIds

        params = ua.BrowseParameters()
        params.RequestedMaxReferencesPerNode = ua.UInt32(1000)
        for node_id in batch:
            description = ua.BrowseDescription()
            description.NodeId = node_id
            description.BrowseDirection = ua.BrowseDirection.Forward
            description.ReferenceTypeId = ua.NodeId(ua.Int32(ObjectIds.HierarchicalReferences))
            description.IncludeSubtypes = True
            description.NodeClassMask = ua.UInt32(ua.NodeClass.Object | ua.NodeClass.Variable)
            description.ResultMask = ua.UInt32(ua.BrowseResultMask.All)
            params.NodesToBrowse.append(description)
        out: list[list[Any]] = []
        for result in await self.call(self.client.uaclient.browse(params)):
            references = list(result.References or [])
            continuation = result.ContinuationPoint
            while continuation:
                more = ua.BrowseNextParameters()
                more.ContinuationPoints = [continuation]
                answer = (await self.call(self.client.uaclient.browse_next(more)))[0]
                references.extend(answer.References or [])
                continuation = answer.ContinuationPoint
            out.append(references)
        return out

    async def walk(self, depth: int) -> list[tuple[Any, list[str]]]:
        """Every variable below Objects within ``depth`` levels, with its browse path (namespace 0 skipped)."""
        from asyncua import ua
        from asyncua.ua.object_ids import ObjectIds

        has_property = ua.NodeId(ua.Int32(ObjectIds.HasProperty))
        root = ua.NodeId(ua.Int32(ObjectIds.ObjectsFolder))
        seen: set[Any] = {root}
        level: list[tuple[Any, list[str]]] = [(root, [])]
        found: list[tuple[Any, list[str]]] = []
        browsed = 0
        for _ in range(depth):
            next_level: list[tuple[Any, list[str]]] = []
            for start in range(0, len(level), 100):
                batch = level[start : start + 100]
                answers = await self.references([node_id for node_id, _path in batch])
                for (_node_id, path), references in zip(batch, answers, strict=True):
                    for reference in references:
                        target = reference.NodeId
                        child = ua.NodeId(target.Identifier, target.NamespaceIndex, target.NodeIdType)
                        if child in seen or reference.ReferenceTypeId == has_property:
                            continue
                        if not path and int(child.NamespaceIndex) == 0:
                            continue  # the standard Server object and friends
                        seen.add(child)
                        child_path = [*path, reference.BrowseName.Name or str(child.Identifier)]
                        next_level.append((child, child_path))
                        if reference.NodeClass == ua.NodeClass.Variable:
                            found.append((child, child_path))
                browsed += len(batch)
                self.progress.status(f"browsing: {browsed} node(s), {len(found)} variable(s) ...")
            level = next_level
            if not level:
                break
        return found

    async def units(self, node_ids: Sequence[Any]) -> list[str | None]:
        """The DisplayName of each node's EngineeringUnits property (None: no such property)."""
        from asyncua import ua
        from asyncua.ua.attribute_ids import AttributeIds

        from connectors.opcua.nodes import engineering_units_path

        property_ids: list[Any] = []
        for start in range(0, len(node_ids), 200):
            paths = [engineering_units_path(n) for n in node_ids[start : start + 200]]
            for result in await self.call(self.client.uaclient.translate_browsepaths_to_nodeids(paths)):
                target = result.Targets[0].TargetId if result.StatusCode.is_good() and result.Targets else None
                property_ids.append(
                    None if target is None else ua.NodeId(target.Identifier, target.NamespaceIndex, target.NodeIdType)
                )
        readable = [p for p in property_ids if p is not None]
        values = iter(await self.read(readable, AttributeIds.Value) if readable else [])
        out: list[str | None] = []
        for property_id in property_ids:
            info = next(values).Value if property_id is not None else None
            eu = info.Value if info is not None else None
            text = eu.DisplayName.Text if isinstance(eu, ua.EUInformation) and eu.DisplayName is not None else None
            out.append(text or None)
        return out

    async def describe(self, found: Sequence[tuple[Any, list[str]]]) -> list[Variable]:
        """Data type, unit and current value of each variable, and whether the agent can carry it."""
        from asyncua import ua
        from asyncua.ua.attribute_ids import AttributeIds

        ids = [node_id for node_id, _path in found]
        values = await self.read(ids, AttributeIds.Value)
        types = await self.read(ids, AttributeIds.DataType)
        ranks = await self.read(ids, AttributeIds.ValueRank)
        units = await self.units(ids)
        variables = []
        for (node_id, path), value, data_type, rank, unit in zip(found, values, types, ranks, units, strict=True):
            variable = Variable(_node_text(node_id, self.namespaces), path, unit=unit)
            variable.data_type = _type_name(data_type.Value.Value if data_type.Value is not None else None)
            status = value.StatusCode or ua.StatusCode()
            raw = value.Value.Value if value.Value is not None else None
            rank_value = rank.Value.Value if rank.Value is not None else None
            if not status.is_good():
                variable.value = status.name
                variable.problem = f"not readable now ({status.name})"
            else:
                variable.value = _value_text(raw)
                if isinstance(raw, list) or (isinstance(rank_value, int) and rank_value >= 1):
                    variable.problem = "an array: add one tag per element with index"
                elif not isinstance(raw, bool | int | float | str | datetime | ua.LocalizedText):
                    variable.problem = f"holds a {variable.data_type}, which the agent does not carry"
            variables.append(variable)
        return variables


def _type_name(type_id: Any) -> str:
    from asyncua import ua
    from asyncua.ua.object_ids import ObjectIdNames

    if not isinstance(type_id, ua.NodeId):
        return "?"
    identifier = type_id.Identifier
    if int(type_id.NamespaceIndex) == 0 and isinstance(identifier, int):
        return ObjectIdNames.get(identifier, str(identifier))
    return str(type_id.to_string())


def _filtered(found: Sequence[tuple[Any, list[str]]], namespaces: Sequence[str], glob: str | None) -> list[Any]:
    if not glob:
        return list(found)
    return [
        (node_id, path)
        for node_id, path in found
        if fnmatch.fnmatchcase("/".join(path), glob) or fnmatch.fnmatchcase(_node_text(node_id, namespaces), glob)
    ]


async def browse_opcua(
    url: str,
    *,
    depth: int,
    glob: str | None,
    limit: float,
    progress: Progress,
    security: OpcUaSecurity | None = None,
) -> tuple[list[Variable], SessionReport]:
    """Browse from Objects down to ``depth`` levels; the variables whose path or node id match ``glob``.

    ``security`` works as for the agent (default: the strongest policy the server offers, and its
    certificate must be trusted: an unknown one goes to ``rejected/`` and the error says how to
    trust it). ``limit`` bounds every request (and the connect). Raises ``DiscoverError`` (code 1)
    when the server cannot be reached, is not trusted, or stops answering. Also returns what the
    handshake found (the security used).
    """
    from asyncua import ua
    from asyncua.client.client import Client
    from asyncua.ua.attribute_ids import AttributeIds
    from asyncua.ua.object_ids import ObjectIds
    from asyncua.ua.uaerrors import UaError

    failures = (TimeoutError, OSError, UaError, EOFError, ConnectionError)
    client = Client(url, timeout=limit)
    client.name = client.description = "edge-agent discover"
    client.session_timeout = 60_000
    report = await _open_session(client, url, limit, security, progress)
    browser = _Browser(client, limit, progress)
    try:
        answer = await browser.read([ua.NodeId(ua.Int32(ObjectIds.Server_NamespaceArray))], AttributeIds.Value)
        browser.namespaces = [str(uri) for uri in (answer[0].Value.Value or [])]
        found = _filtered(await browser.walk(depth), browser.namespaces, glob)
        progress.status(f"reading {len(found)} variable(s) ...")
        variables = await browser.describe(found) if found else []
    except failures as exc:
        reason = "no answer within the timeout" if isinstance(exc, TimeoutError) else (str(exc) or type(exc).__name__)
        raise DiscoverError(
            f"the server at {url} stopped answering while browsing: {reason}. Fix: retry with a higher --timeout "
            "or a smaller --depth",
            code=1,
        ) from None
    finally:
        progress.clear()
        try:
            async with asyncio.timeout(limit):
                await client.disconnect()
        except Exception:  # noqa: BLE001 - the session dies with the socket anyway
            client.disconnect_socket()
    return variables, report


async def _open_session(
    client: Any, url: str, limit: float, security: OpcUaSecurity | None, progress: Progress
) -> SessionReport:
    """Endpoint, trust, certificates and session, as the agent does; ``DiscoverError`` (code 1) if refused."""
    from asyncua.ua.uaerrors import UaError

    from connectors.opcua.config import OpcUaSecurity
    from connectors.opcua.handshake import Login, SessionReport, Target, prepare_own, secure
    from edge_agent.core.errors import ConnectError, EndpointChoiceError

    target = Target("discover", url, security or OpcUaSecurity(), Login(), limit)
    report = SessionReport()
    progress.status(f"connecting to {url} ...")
    try:
        own = await prepare_own(target) if target.security.enabled else None
        async with asyncio.timeout(limit * 2):  # GetEndpoints, then the session
            await secure(client, target, report, own=own)
            await client.connect()
    except ConnectError as exc:
        progress.clear()
        with contextlib.suppress(Exception):
            client.disconnect_socket()
        text = str(exc).removeprefix("machine 'discover': ")
        cause = exc.__cause__
        if isinstance(cause, EndpointChoiceError):
            text += ". For discover: --security none" if cause.only_none else ". For discover: --security auto"
        raise DiscoverError(text, code=1) from None
    except (TimeoutError, OSError, UaError, EOFError, ConnectionError) as exc:
        progress.clear()
        with contextlib.suppress(Exception):
            client.disconnect_socket()
        reason = "no answer" if isinstance(exc, TimeoutError) else (str(exc).strip() or type(exc).__name__)
        if "BadUserAccessDenied" in reason or "BadIdentityToken" in reason:
            reason += " (the server does not allow anonymous sessions, which discover uses)"
        raise DiscoverError(
            f"cannot connect to {url}: {reason}. Fix: check host, port and path (the server's endpoint URL), "
            "and that the server runs",
            code=1,
        ) from None
    return report
