"""``edge-agent discover``: map an OPC UA server or a Modbus device before writing its config.

Strictly read-only: OPC UA uses Browse, BrowseNext, Read and TranslateBrowsePathsToNodeIds (plus
the session services); Modbus uses function codes 3 and 4 (read holding / input registers) only.

- ``discover opc.tcp://host:port[/path]`` browses from the Objects folder (the standard Server
  object in namespace 0 is skipped), shows every variable (node id, browse path, data type,
  unit, value) and writes a machine section for the agent's config.
- ``discover modbus://host[:port] --unit 1 --range 0-199`` reads a register range and shows each
  address as int16, uint16 and float32 in the four byte orders.

Exit codes as for every subcommand: 0 done, 1 the device could not be reached, 2 bad input.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import fnmatch
import logging
import math
import re
import struct
import sys
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any, TextIO
from urllib.parse import SplitResult, urlsplit

import yaml

from connectors.modbus.decode import decode_raw, exception_reason
from connectors.opcua.security import STRENGTH

if TYPE_CHECKING:
    from connectors.opcua.config import OpcUaSecurity
    from connectors.opcua.handshake import SessionReport

BYTE_ORDERS = ("ABCD", "CDAB", "BADC", "DCBA")
MAX_REGISTERS = 125
LAST_ADDRESS = 65535
_TAG_NAME = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}$")
_MACHINE_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$")

_log = logging.getLogger(__name__)


class DiscoverError(Exception):
    """A problem to report in one line; ``code`` is the exit code (1 unreachable, 2 bad input)."""

    def __init__(self, message: str, code: int = 2) -> None:
        super().__init__(message)
        self.code = code


# --------------------------------------------------------------------------------------------
# Input parsing (pure)


def parse_url(url: str) -> tuple[str, SplitResult]:
    """``("opcua" | "modbus", parts)`` for a device URL, or ``DiscoverError`` with the fix."""
    fix = "Fix: write e.g. opc.tcp://192.168.0.10:4840 or modbus://192.168.0.20:502"
    try:
        parts = urlsplit(url.strip())
        port = parts.port
    except ValueError as exc:
        raise DiscoverError(f"cannot read the address {url!r} ({exc}). {fix}") from None
    scheme = parts.scheme.lower()
    if scheme not in ("opc.tcp", "modbus", "modbus+tcp"):
        raise DiscoverError(f"unknown address {url!r}: it must start with opc.tcp:// or modbus://. {fix}")
    if not parts.hostname:
        raise DiscoverError(f"the address {url!r} names no host. {fix}")
    if port == 0:
        raise DiscoverError(f"the address {url!r} has port 0. {fix}")
    if parts.username or parts.password:
        raise DiscoverError(
            f"the address {url!r} holds a user name or password. Fix: remove user:password@ from it "
            "(only anonymous sessions are supported by discover for now)"
        )
    return ("opcua" if scheme == "opc.tcp" else "modbus"), parts


def parse_range(text: str) -> tuple[int, int]:
    """``"0-199"`` → ``(0, 199)``; ``"7"`` → ``(7, 7)``; ``DiscoverError`` with the fix otherwise."""
    match = re.fullmatch(r"\s*(\d+)\s*(?:-\s*(\d+)\s*)?", text)
    if match is None:
        raise DiscoverError(f"--range {text!r} is not a range of addresses. Fix: write it as FIRST-LAST, e.g. 0-199")
    first = int(match.group(1))
    last = int(match.group(2)) if match.group(2) is not None else first
    if first > LAST_ADDRESS or last > LAST_ADDRESS:
        raise DiscoverError(
            f"--range {text} goes past {LAST_ADDRESS}, the last Modbus address. Fix: use addresses 0-{LAST_ADDRESS} "
            "(register 40001 of a manual is holding address 0)"
        )
    if last < first:
        raise DiscoverError(f"--range {text} is reversed. Fix: write the lower address first, e.g. {last}-{first}")
    return first, last


def tag_names(paths: Sequence[Sequence[str]]) -> list[str]:
    """A unique, valid tag name for each browse path: the last name, with more of the path on a clash."""

    def clean(parts: Sequence[str]) -> str:
        text = ".".join(re.sub(r"[^A-Za-z0-9_.-]+", "_", p).strip("._-") or "_" for p in parts)
        text = text.lstrip(".-") or "_"
        return text[:128]

    depth = [1] * len(paths)
    names = [clean(p[-1:]) for p in paths]
    for _ in range(max((len(p) for p in paths), default=0)):
        seen: dict[str, list[int]] = {}
        for index, name in enumerate(names):
            seen.setdefault(name, []).append(index)
        clashes = [i for group in seen.values() if len(group) > 1 for i in group]
        grown = False
        for index in clashes:
            if depth[index] < len(paths[index]):
                depth[index] += 1
                names[index] = clean(paths[index][-depth[index] :])
                grown = True
        if not grown:
            break
    taken: set[str] = set()
    for index, name in enumerate(names):
        unique, counter = name, 2
        while unique in taken:
            unique = f"{name[:120]}_{counter}"
            counter += 1
        taken.add(unique)
        names[index] = unique
    return names


def shortest_float32(value: float) -> str:
    """The shortest text that reads back as the same float32 (e.g. ``12.3456``, not ``12.345600128``)."""
    if math.isnan(value) or math.isinf(value):
        return str(value)
    packed = struct.pack(">f", value)
    for precision in range(1, 10):
        text = f"{value:.{precision}g}"
        if struct.pack(">f", float(text)) == packed:
            return text
    return repr(value)


# --------------------------------------------------------------------------------------------
# Progress


class _Progress:
    """One self-overwriting status line on stderr, where a bar is wanted (``edge_agent.commands.progress.wanted``).

    Browsing has no known total, so it is a line that counts, not a bar; a register dump, whose
    total is known, gets a real bar (``dump_modbus``).
    """

    def __init__(self, stream: TextIO = sys.stderr) -> None:
        from edge_agent.commands.progress import wanted

        self._stream = stream
        self._on = wanted(stream)

    def show(self, text: str) -> None:
        if self._on:
            self._stream.write(f"\r\x1b[K{text}")
            self._stream.flush()

    def done(self) -> None:
        if self._on:
            self._stream.write("\r\x1b[K")
            self._stream.flush()


def _table(rows: Sequence[Sequence[str]], header: Sequence[str]) -> str:
    widths = [max(len(str(r[i])) for r in [header, *rows]) for i in range(len(header))]
    lines = ["  ".join(str(c).ljust(w) for c, w in zip(row, widths, strict=True)).rstrip() for row in [header, *rows]]
    lines.insert(1, "  ".join("-" * w for w in widths))
    return "\n".join(lines)


# --------------------------------------------------------------------------------------------
# OPC UA


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

    def __init__(self, client: Any, limit: float, progress: _Progress) -> None:
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
                self.progress.show(f"browsing: {browsed} node(s), {len(found)} variable(s) ...")
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


def security_of(choice: str, pki_dir: str | None) -> OpcUaSecurity:
    """``--security`` as the machine config's ``security`` (``auto``, ``none`` or a policy name)."""
    from connectors.opcua.config import OpcUaSecurity

    if choice == "none":
        return OpcUaSecurity.model_validate("none")
    # On the command line a relative folder means the current one (a config file may not say that).
    folder = str(Path(pki_dir).expanduser().absolute()) if pki_dir else None
    return OpcUaSecurity.model_validate({"policy": choice, "pki_dir": folder})


async def browse_opcua(
    url: str, *, depth: int, glob: str | None, limit: float, security: OpcUaSecurity | None = None
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
    progress = _Progress()
    client = Client(url, timeout=limit)
    client.name = client.description = "edge-agent discover"
    client.session_timeout = 60_000
    report = await _open_session(client, url, limit, security, progress)
    browser = _Browser(client, limit, progress)
    try:
        answer = await browser.read([ua.NodeId(ua.Int32(ObjectIds.Server_NamespaceArray))], AttributeIds.Value)
        browser.namespaces = [str(uri) for uri in (answer[0].Value.Value or [])]
        found = _filtered(await browser.walk(depth), browser.namespaces, glob)
        progress.show(f"reading {len(found)} variable(s) ...")
        variables = await browser.describe(found) if found else []
    except failures as exc:
        reason = "no answer within the timeout" if isinstance(exc, TimeoutError) else (str(exc) or type(exc).__name__)
        raise DiscoverError(
            f"the server at {url} stopped answering while browsing: {reason}. Fix: retry with a higher --timeout "
            "or a smaller --depth",
            code=1,
        ) from None
    finally:
        progress.done()
        try:
            async with asyncio.timeout(limit):
                await client.disconnect()
        except Exception:  # noqa: BLE001 - the session dies with the socket anyway
            client.disconnect_socket()
    return variables, report


async def _open_session(
    client: Any, url: str, limit: float, security: OpcUaSecurity | None, progress: _Progress
) -> SessionReport:
    """Endpoint, trust, certificates and session, as the agent does; ``DiscoverError`` (code 1) if refused."""
    from asyncua.ua.uaerrors import UaError

    from connectors.opcua.config import OpcUaSecurity
    from connectors.opcua.handshake import Login, SessionReport, Target, prepare_own, secure
    from edge_agent.core.errors import ConnectError, EndpointChoiceError

    target = Target("discover", url, security or OpcUaSecurity(), Login(), limit)
    report = SessionReport()
    progress.show(f"connecting to {url} ...")
    try:
        own = await prepare_own(target) if target.security.enabled else None
        async with asyncio.timeout(limit * 2):  # GetEndpoints, then the session
            await secure(client, target, report, own=own)
            await client.connect()
    except ConnectError as exc:
        progress.done()
        with contextlib.suppress(Exception):
            client.disconnect_socket()
        text = str(exc).removeprefix("machine 'discover': ")
        cause = exc.__cause__
        if isinstance(cause, EndpointChoiceError):
            text += ". For discover: --security none" if cause.only_none else ". For discover: --security auto"
        raise DiscoverError(text, code=1) from None
    except (TimeoutError, OSError, UaError, EOFError, ConnectionError) as exc:
        progress.done()
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


def machine_section(
    endpoint: str, machine_id: str, variables: Sequence[Variable], report: SessionReport | None = None
) -> str:
    """The YAML of one ``type: opcua`` machine for the variables that can be carried.

    With ``report`` (what discover's own session used) the section states its security: the
    agent's default (the strongest policy offered, certificate trusted in the trust store), or
    ``security: none`` with a warning when discover ran without security.
    """
    usable = [v for v in variables if v.problem is None]
    names = tag_names([v.path for v in usable])
    tags: list[dict[str, Any]] = []
    for name, variable in zip(names, usable, strict=True):
        tag: dict[str, Any] = {"name": name, "node": variable.node}
        if variable.unit:
            tag["unit"] = variable.unit
        tags.append(tag)
    machine: dict[str, Any] = {"type": "opcua", "id": machine_id, "endpoint": endpoint}
    lines = [
        f"# Found by: edge-agent discover {endpoint}",
        "# One entry of the `machines:` list of the agent's config. Rename tags as you like; the node",
        "# ids use the namespace URI (nsu=), so they survive the server renumbering its namespaces.",
    ]
    chosen = report.chosen if report is not None else None
    if chosen is not None and chosen.policy == "None":
        machine["security"] = "none"
        lines += [
            "# Security: none (discover ran with --security none): no signing, no encryption. Keep this",
            "# only on a trusted network; without the security line the agent signs and encrypts.",
        ]
    elif chosen is not None and report is not None:
        where = f" in {report.pki_dir}" if report.pki_dir is not None else ""
        lines += [
            f"# Security: {chosen} (the agent's default: the strongest policy the server offers).",
            f"# The server's certificate is trusted{where}; the agent must use the same trust store",
            "# (security.pki_dir, default $STATE_DIRECTORY/pki): see 'edge-agent certs --help'.",
        ]
    body = yaml.safe_dump(machine, sort_keys=False, allow_unicode=True)
    if tags:
        body += yaml.safe_dump({"tags": tags}, sort_keys=False, allow_unicode=True)
    else:
        body += "tags: []  # no readable variable found: widen --filter or raise --depth\n"
    skipped = [v for v in variables if v.problem is not None]
    if skipped:
        lines_skipped = ["# Left out:"] + [f"#   {v.node} ({v.browse_path}): {v.problem}" for v in skipped]
        body += "\n".join(lines_skipped) + "\n"
    return "\n".join(lines) + "\n" + body


def _default_machine_id(host: str) -> str:
    text = re.sub(r"[^A-Za-z0-9_.-]+", "-", host).strip("-._") or "machine"
    return text[:64]


def _discover_opcua(args: argparse.Namespace, parts: SplitResult) -> int:
    if args.depth is not None and args.depth < 1:
        raise DiscoverError(f"--depth {args.depth} browses nothing. Fix: use 1 or more (the default is 10)")
    machine_id = args.id or _default_machine_id(parts.hostname or "machine")
    if not _MACHINE_ID.match(machine_id):
        raise DiscoverError(
            f"--id {machine_id!r} is not a valid machine id. Fix: use letters, digits, '_', '.' and '-' only"
        )
    endpoint = args.url.strip()
    security = security_of(args.security or "auto", args.pki_dir)
    variables, report = asyncio.run(
        browse_opcua(endpoint, depth=args.depth or 10, glob=args.filter, limit=args.timeout, security=security)
    )
    rows = [
        [v.node, v.browse_path, v.data_type, v.unit or "", v.value + ("" if v.problem is None else "  (left out)")]
        for v in variables
    ]
    table = (
        _table(rows, ["node", "browse path", "type", "unit", "value"])
        if rows
        else "no variables found" + (f" matching {args.filter!r}" if args.filter else "")
    )
    section = machine_section(endpoint, machine_id, variables, report)
    summary = f"{len(variables)} variable(s), {sum(v.problem is None for v in variables)} in the machine section"
    if args.out:
        try:
            Path(args.out).write_text(section, encoding="utf-8")
        except OSError as exc:
            raise DiscoverError(f"cannot write {args.out}: {exc.strerror}. Fix: choose a writable path") from None
        print(table)
        print(f"\n{summary}; wrote {args.out}")
    else:
        # The table goes to stderr, so `discover ... > machine.yaml` keeps just the YAML.
        print(table, file=sys.stderr)
        print(f"\n{summary}", file=sys.stderr)
        sys.stdout.write(section)
    return 0


# --------------------------------------------------------------------------------------------
# Modbus


@dataclass
class RegisterRead:
    """What a register range read gave: the value of each address, or why it could not be read."""

    values: dict[int, int]
    failed: dict[int, str]


ReadFunc = Callable[[int, int], Any]
"""``await read(start, count)`` → a list of registers, or an ``int`` Modbus exception code."""


async def read_range(
    read: ReadFunc, first: int, last: int, on_progress: Callable[[int], None] | None = None
) -> RegisterRead:
    """Read ``first``..``last`` in requests of at most 125 registers.

    A request answered with exception 2 or 3 (illegal address / value) is split in halves until the
    addresses that fail are found one by one; any other exception marks the whole request.
    """
    out = RegisterRead({}, {})

    async def chunk(start: int, count: int) -> None:
        answer = await read(start, count)
        if isinstance(answer, int):
            if answer in (2, 3) and count > 1:
                half = count // 2
                await chunk(start, half)
                await chunk(start + half, count - half)
                return
            for address in range(start, start + count):
                out.failed[address] = exception_reason(answer)
        elif isinstance(answer, str):
            for address in range(start, start + count):
                out.failed[address] = answer
        else:
            for offset, word in enumerate(answer[:count]):
                out.values[start + offset] = int(word)
            for address in range(start + len(answer), start + count):
                out.failed[address] = f"the device answered {len(answer)} of {count} registers"
        if on_progress is not None:
            on_progress(len(out.values) + len(out.failed))

    for start in range(first, last + 1, MAX_REGISTERS):
        await chunk(start, min(MAX_REGISTERS, last + 1 - start))
    return out


def register_rows(registers: RegisterRead, first: int, last: int) -> list[list[str]]:
    """One row per address: hex, int16, uint16 and float32 (this address and the next) per byte order."""
    rows = []
    for address in range(first, last + 1):
        if address in registers.failed:
            rows.append([str(address), "-", "-", "-", *(["-"] * 4), registers.failed[address]])
            continue
        word = registers.values.get(address)
        if word is None:
            continue
        row = [str(address), f"0x{word:04X}", str(decode_raw([word], "int16")), str(word)]
        following = registers.values.get(address + 1)
        for order in BYTE_ORDERS:
            if following is None:
                row.append("-")
            else:
                row.append(shortest_float32(float(decode_raw([word, following], "float32", order))))
        row.append("")
        rows.append(row)
    return rows


async def dump_modbus(
    host: str, port: int, *, unit: int, table: str, first: int, last: int, limit: float
) -> RegisterRead:
    """Read registers ``first``..``last`` (and one more, for the float pairs) with FC 3 or FC 4 only."""
    from pymodbus import FramerType
    from pymodbus.client import AsyncModbusTcpClient
    from pymodbus.exceptions import ModbusException

    progress = _Progress()
    client = AsyncModbusTcpClient(
        host, port=port, framer=FramerType.SOCKET, timeout=limit, retries=0, reconnect_delay=0, name="discover"
    )
    progress.show(f"connecting to {host}:{port} ...")
    try:
        async with asyncio.timeout(limit + 1):
            connected = await client.connect()
    except (TimeoutError, OSError, ModbusException):
        connected = False
    if not connected:
        client.close()
        progress.done()
        raise DiscoverError(
            f"cannot connect to {host}:{port} (refused, no route or no answer within {limit:g} s). "
            "Fix: check host and port (502 by default) and close other clients: many devices take only one or two",
            code=1,
        )
    function = client.read_holding_registers if table == "holding" else client.read_input_registers

    async def read(start: int, count: int) -> list[int] | int | str:
        nonlocal client
        try:
            async with asyncio.timeout(limit + 0.5):
                response = await function(start, count=count, device_id=unit)
        except (TimeoutError, ModbusException) as exc:
            reason = "no answer" if isinstance(exc, TimeoutError) else f"request failed: {exc}"
            if not client.connected:
                raise DiscoverError(f"the connection to {host}:{port} was lost: {exc}", code=1) from None
            return f"{reason} within {limit:g} s (check --unit)"
        if response.isError():
            code: int = response.exception_code
            return code
        return list(response.registers)

    # One register past the range, so the float32 pair of the last address can be shown too.
    upto = min(last + 1, LAST_ADDRESS)
    total = upto - first + 1
    progress.done()
    from edge_agent.commands.progress import progress as bar_for

    bar = bar_for(total=total, desc=f"reading {host}:{port} unit {unit}", unit="reg")

    def advance(done: int) -> None:
        bar.update(done - bar.n)

    try:
        result = await read_range(read, first, upto, advance)
    finally:
        bar.close()
        client.close()
    return result


def _discover_modbus(args: argparse.Namespace, parts: SplitResult) -> int:
    first, last = parse_range(args.range or "0-99")
    unit = 1 if args.unit is None else args.unit
    if not 0 <= unit <= 255:
        raise DiscoverError(f"--unit {unit} is not a Modbus unit id. Fix: use 0-255 (plain TCP devices mostly use 1)")
    table = args.table or "holding"
    host = parts.hostname or ""
    port = parts.port or 502
    registers = asyncio.run(dump_modbus(host, port, unit=unit, table=table, first=first, last=last, limit=args.timeout))
    function = 3 if table == "holding" else 4
    print(f"{table} registers {first}-{last} of unit {unit} at {host}:{port} (function code {function})")
    print("float32 columns: this register and the next, in each byte order\n")
    header = ["addr", "hex", "int16", "uint16", *(f"f32 {o}" for o in BYTE_ORDERS), "error"]
    print(_table(register_rows(registers, first, last), header))
    bad = sum(1 for a in range(first, last + 1) if a in registers.failed)
    print(f"\n{last - first + 1 - bad} register(s) read, {bad} failed")
    return 0


# --------------------------------------------------------------------------------------------
# Command


def _checked(args: argparse.Namespace) -> tuple[str, SplitResult]:
    """The URL's kind and parts, after checking the options fit it."""
    if not args.timeout > 0:
        raise DiscoverError(f"--timeout {args.timeout:g} is not positive. Fix: use e.g. --timeout 5")
    kind, parts = parse_url(args.url)
    others = ("range", "unit", "table") if kind == "opcua" else ("depth", "filter", "out", "id", "security", "pki_dir")
    wrong = [f"--{k}" for k in others if getattr(args, k) is not None]
    if wrong:
        applies = "modbus://" if kind == "opcua" else "opc.tcp://"
        raise DiscoverError(f"{', '.join(wrong)} only apply to {applies} addresses. Fix: remove them")
    return kind, parts


def cmd_discover(args: argparse.Namespace) -> int:
    """Dispatch by URL scheme; every expected failure is one line on stderr."""
    for noisy in ("asyncua", "pymodbus"):
        logging.getLogger(noisy).setLevel(logging.CRITICAL)
    try:
        kind, parts = _checked(args)
        return _discover_opcua(args, parts) if kind == "opcua" else _discover_modbus(args, parts)
    except DiscoverError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return exc.code
    except KeyboardInterrupt:
        print("error: interrupted", file=sys.stderr)
        return 1
    except Exception as exc:  # noqa: BLE001 - an operator tool prints one line, never a traceback
        _log.debug("discover failed", exc_info=True)
        print(f"error: discovery failed: {type(exc).__name__}: {exc}", file=sys.stderr)
        return 1


DISCOVER_EPILOG = """\
examples:
  edge-agent discover opc.tcp://192.168.0.10:4840 --filter '*Line1*' --out press.yaml
  edge-agent discover opc.tcp://192.168.0.10:4840 > press.yaml      (table on stderr)
  edge-agent discover opc.tcp://127.0.0.1:4840/edge-sim/ --security none    (a server without security)
  edge-agent discover modbus://192.168.0.20:502 --unit 1 --range 0-199 --table input

Read-only: OPC UA Browse/Read, Modbus function codes 3 and 4. Exit 0 done, 1 unreachable, 2 bad input.
"""


def register(subparsers: Any) -> None:
    """Add ``discover`` to the CLI's subcommands."""
    parser = subparsers.add_parser(
        "discover",
        help="browse an OPC UA server or dump Modbus registers, to write a machine's config",
        description="Map a device read-only: list an OPC UA server's variables and write a machine section, "
        "or show a Modbus register range in every type and byte order.",
        epilog=DISCOVER_EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("url", help="opc.tcp://host:port[/path] or modbus://host[:port]")
    parser.add_argument("--timeout", type=float, default=5.0, help="seconds each request may take (default 5)")
    opcua = parser.add_argument_group("OPC UA")
    opcua.add_argument("--depth", type=int, help="levels to browse below Objects (default 10)")
    opcua.add_argument(
        "--filter", metavar="GLOB", help="keep variables whose browse path or node id match, e.g. '*pump-1*'"
    )
    opcua.add_argument("--out", metavar="FILE", help="write the machine section here (default: standard output)")
    opcua.add_argument("--id", help="machine id in the generated section (default: from the host)")
    opcua.add_argument(
        "--security",
        choices=("auto", "none", *STRENGTH),
        help="auto (default): the strongest policy the server offers, signed and encrypted, with its certificate "
        "trusted (edge-agent certs trust); none: no security, for a server on a trusted network that offers "
        "nothing else",
    )
    opcua.add_argument(
        "--pki-dir", metavar="DIR", help="trust store folder (default: $STATE_DIRECTORY/pki, as the agent's)"
    )
    modbus = parser.add_argument_group("Modbus")
    modbus.add_argument("--unit", type=int, help="unit id (slave id) to read (default 1)")
    modbus.add_argument("--range", metavar="FIRST-LAST", help="register addresses, zero-based (default 0-99)")
    modbus.add_argument("--table", choices=("holding", "input"), help="holding (FC 3, default) or input (FC 4)")
    parser.set_defaults(func=cmd_discover)


def main(argv: list[str] | None = None) -> None:
    """``python -m edge_agent.commands.discover URL ...``: the same command without the rest of the CLI."""
    parser = argparse.ArgumentParser(prog="edge-agent")
    register(parser.add_subparsers(dest="command", required=True))
    args = parser.parse_args(["discover", *(sys.argv[1:] if argv is None else argv)])
    raise SystemExit(args.func(args))


if __name__ == "__main__":
    main()
