"""Pure helpers for node ids: resolving ``nsu=`` against a namespace array, chunking, browse paths,
and the tag-to-node mapping of one connection."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import TypeVar, cast

from asyncua import ua
from asyncua.ua.object_ids import ObjectIds

from connectors.opcua.config import OpcUaTag

_T = TypeVar("_T")


@dataclass(frozen=True, slots=True)
class NodeTarget:
    """A configured tag and the node id it resolved to on the current connection (None: unresolved)."""

    tag: OpcUaTag
    node_id: ua.NodeId | None
    problem: str | None = None
    server_unit: str | None = None

    @property
    def unit(self) -> str | None:
        """The configured unit, else the one the server names in the node's EngineeringUnits."""
        return self.tag.unit if self.tag.unit is not None else self.server_unit


def resolve_node(node: str, namespaces: Sequence[str]) -> ua.NodeId:
    """The NodeId for ``node`` on a server with this namespace array.

    ``nsu=<uri>;...`` is looked up in ``namespaces``; a missing URI raises ``LookupError`` naming
    the URIs the server has. ``ns=<index>;...`` is returned as written.
    """
    parsed = ua.NodeId.from_string(node)
    if isinstance(parsed, ua.ExpandedNodeId) and parsed.NamespaceUri:
        try:
            index = list(namespaces).index(parsed.NamespaceUri)
        except ValueError:
            known = ", ".join(repr(uri) for uri in namespaces) or "none"
            raise LookupError(
                f"the server has no namespace {parsed.NamespaceUri!r} (it has: {known}). "
                "Fix: correct the nsu= part of the node id"
            ) from None
        return ua.NodeId(parsed.Identifier, ua.Int16(index), parsed.NodeIdType)
    return ua.NodeId(parsed.Identifier, parsed.NamespaceIndex, parsed.NodeIdType)


def chunked(items: Sequence[_T], size: int) -> list[Sequence[_T]]:
    """``items`` in consecutive slices of at most ``size`` (``size`` 0 means no limit)."""
    if size <= 0 or len(items) <= size:
        return [items]
    return [items[i : i + size] for i in range(0, len(items), size)]


def engineering_units_path(node_id: ua.NodeId) -> ua.BrowsePath:
    """The browse path from a variable to its EngineeringUnits property."""
    element = ua.RelativePathElement()
    element.ReferenceTypeId = ua.NodeId(ua.Int32(ObjectIds.HasProperty))
    element.IsInverse = cast("ua.Boolean", False)  # asyncua types booleans with a marker class
    element.IncludeSubtypes = cast("ua.Boolean", True)
    element.TargetName = ua.QualifiedName("EngineeringUnits", ua.UInt16(0))
    path = ua.BrowsePath()
    path.StartingNode = node_id
    path.RelativePath = ua.RelativePath(Elements=[element])
    return path
