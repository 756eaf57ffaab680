"""Small typed helpers for reading the simulator with asyncua's client in tests.

asyncua types every DataValue field as optional; these helpers assert presence once, so the
tests read as what they check.
"""

from __future__ import annotations

from asyncua import ua
from asyncua.client.client import Client

from simulators.opcua_server import string_node
from simulators.register_map import NAMESPACE_URI

__all__ = ["Client", "node_id", "source_ns", "status_value", "value_of"]


async def node_id(client: Client, identifier: str) -> ua.NodeId:
    """The node id of ``<machine>.<signal>`` in the simulator's namespace (index looked up)."""
    return string_node(identifier, await client.get_namespace_index(NAMESPACE_URI))


def source_ns(value: ua.DataValue) -> int:
    """A DataValue's SourceTimestamp as integer UTC nanoseconds (what ``served()`` records)."""
    stamp = value.SourceTimestamp
    assert stamp is not None, "the simulator sets a SourceTimestamp on every value"
    return int(stamp.timestamp()) * 10**9 + stamp.microsecond * 1000


def value_of(value: ua.DataValue) -> object:
    """The Python value inside a DataValue."""
    assert value.Value is not None
    return value.Value.Value


def status_value(value: ua.DataValue) -> int:
    """The numeric status code of a DataValue."""
    assert value.StatusCode is not None
    return int(value.StatusCode.value)
