"""``edge-agent discover opc.tcp://…``: list a server's variables and write a machine section for them.

The browse itself is ``browse.py``; this module turns what it found into the table an operator
reads and the ``type: opcua`` section the agent's config takes as it is: tag names made unique
from the browse paths, node ids with the namespace URI (so they survive the server renumbering
its namespaces), units, and the security the agent will use, stated in a comment.
"""

from __future__ import annotations

import argparse
import re
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import yaml

from connectors.discovery import DiscoverError, DiscoverRequest, Discovery, Progress
from connectors.opcua.browse import Variable, browse_opcua
from connectors.opcua.security import STRENGTH
from edge_agent.core.config_base import MACHINE_ID_PATTERN

if TYPE_CHECKING:
    from connectors.opcua.config import OpcUaSecurity
    from connectors.opcua.handshake import SessionReport

_MACHINE_ID = re.compile(MACHINE_ID_PATTERN)
DEFAULT_DEPTH = 10


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


def security_of(choice: str, pki_dir: str | None) -> OpcUaSecurity:
    """``--security`` as the machine config's ``security`` (``auto``, ``none`` or a policy name)."""
    from connectors.opcua.config import OpcUaSecurity

    if choice == "none":
        return OpcUaSecurity.model_validate("none")
    # On the command line a relative folder means the current one (a config file may not say that).
    folder = str(Path(pki_dir).expanduser().absolute()) if pki_dir else None
    return OpcUaSecurity.model_validate({"policy": choice, "pki_dir": folder})


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


class OpcUaDiscoverer:
    """The OPC UA part of ``edge-agent discover`` (``connectors.discovery.Discoverer``)."""

    schemes: tuple[str, ...] = ("opc.tcp",)
    url_form = "opc.tcp://host:port[/path]"
    example_url = "opc.tcp://192.168.0.10:4840"
    summary = "browse an OPC UA server"
    description = "list an OPC UA server's variables and write a machine section"
    examples: tuple[str, ...] = (
        "edge-agent discover opc.tcp://192.168.0.10:4840 --filter '*Line1*' --out press.yaml",
        "edge-agent discover opc.tcp://192.168.0.10:4840 > press.yaml      (table on stderr)",
        "edge-agent discover opc.tcp://127.0.0.1:4840/edge-sim/ --security none    (a server without security)",
    )
    read_only = "OPC UA Browse/Read"
    group = "OPC UA"
    options: tuple[str, ...] = ("depth", "filter", "out", "id", "security", "pki_dir")
    loggers: tuple[str, ...] = ("asyncua",)

    def add_arguments(self, group: argparse._ArgumentGroup) -> None:
        """``--depth``, ``--filter``, ``--out``, ``--id``, ``--security``, ``--pki-dir``."""
        group.add_argument("--depth", type=int, help="levels to browse below Objects (default 10)")
        group.add_argument(
            "--filter", metavar="GLOB", help="keep variables whose browse path or node id match, e.g. '*pump-1*'"
        )
        group.add_argument("--out", metavar="FILE", help="write the machine section here (default: standard output)")
        group.add_argument("--id", help="machine id in the generated section (default: from the host)")
        group.add_argument(
            "--security",
            choices=("auto", "none", *STRENGTH),
            help="auto (default): the strongest policy the server offers, signed and encrypted, with its "
            "certificate trusted (edge-agent certs trust); none: no security, for a server on a trusted network "
            "that offers nothing else",
        )
        group.add_argument(
            "--pki-dir", metavar="DIR", help="trust store folder (default: $STATE_DIRECTORY/pki, as the agent's)"
        )

    async def discover(self, request: DiscoverRequest, progress: Progress) -> Discovery:
        """Browse, then the table of every variable and the machine section of those the agent can carry."""
        options = request.options
        depth: int | None = options.get("depth")
        if depth is not None and depth < 1:
            raise DiscoverError(f"--depth {depth} browses nothing. Fix: use 1 or more (the default is 10)")
        machine_id = options.get("id") or _default_machine_id(request.host or "machine")
        if not _MACHINE_ID.match(machine_id):
            raise DiscoverError(
                f"--id {machine_id!r} is not a valid machine id. Fix: use letters, digits, '_', '.' and '-' only"
            )
        glob: str | None = options.get("filter")
        security = security_of(options.get("security") or "auto", options.get("pki_dir"))
        variables, report = await browse_opcua(
            request.url,
            depth=depth or DEFAULT_DEPTH,
            glob=glob,
            limit=request.timeout,
            progress=progress,
            security=security,
        )
        rows = [
            [v.node, v.browse_path, v.data_type, v.unit or "", v.value + ("" if v.problem is None else "  (left out)")]
            for v in variables
        ]
        carried = sum(v.problem is None for v in variables)
        return Discovery(
            columns=["node", "browse path", "type", "unit", "value"],
            rows=rows,
            empty="no variables found" + (f" matching {glob!r}" if glob else ""),
            summary=f"{len(variables)} variable(s), {carried} in the machine section",
            section=machine_section(request.url, machine_id, variables, report),
            out=options.get("out") or None,
        )
