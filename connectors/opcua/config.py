"""Config of an OPC UA machine: the endpoint, how to log in, and which nodes to read."""

from __future__ import annotations

from typing import TYPE_CHECKING, Literal, Self

from pydantic import Field, SecretStr, field_validator, model_validator

from connectors.base import TAG_NAME_PATTERN, MachineConfigBase, StrictModel
from edge_agent.durations import Duration

if TYPE_CHECKING:
    from connectors.base import Connector


class OpcUaTag(StrictModel):
    """One value to read, addressed by a node id.

    ``node`` is an OPC UA node id string. Prefer the namespace-URI form
    ``nsu=urn:vendor:app;s=Machine.Signal`` over ``ns=2;s=...``: the index can change when the
    server restarts, the URI cannot.
    """

    name: str = Field(pattern=TAG_NAME_PATTERN)
    node: str
    unit: str | None = None

    @field_validator("node")
    @classmethod
    def _node_has_identifier(cls, node: str) -> str:
        from asyncua import ua
        from asyncua.ua.uaerrors import UaStringParsingError

        parts = dict(p.split("=", 1) for p in node.split(";") if "=" in p)
        if not any(k in parts for k in ("s", "i", "g", "b")):
            raise ValueError(
                f"{node!r} is not an OPC UA node id. Fix: write it as "
                "'nsu=<namespace uri>;s=<string id>' or 'ns=<index>;i=<number>'"
            )
        if not ("nsu" in parts or "ns" in parts or "i" in parts):
            raise ValueError(f"{node!r} names no namespace. Fix: prefix it with 'nsu=<namespace uri>;'")
        try:
            ua.NodeId.from_string(node)
        except (UaStringParsingError, ValueError) as exc:
            raise ValueError(
                f"{node!r} is not a valid OPC UA node id. Fix: write it as "
                "'nsu=<namespace uri>;s=<string id>', 'ns=<index>;i=<number>', 'ns=<index>;g=<guid>' "
                "or 'ns=<index>;b=<base64>'"
            ) from exc
        return node


class OpcUaSecurity(StrictModel):
    """Transport security. Only ``None`` is implemented in this release (see issue tracker)."""

    policy: Literal["None"] = "None"
    mode: Literal["None"] = "None"


class OpcUaMachine(MachineConfigBase):
    """A machine read over OPC UA (client side of the protocol, read-only)."""

    type: Literal["opcua"]
    endpoint: str = Field(pattern=r"^opc\.tcp://", description="opc.tcp://host:port/path")
    security: OpcUaSecurity = OpcUaSecurity()
    username: str | None = None
    password: SecretStr | None = None
    connect_timeout: Duration | None = Field(
        default=None, description="Time opening the connection and session may take; default: timeout."
    )
    tags: list[OpcUaTag] = Field(min_length=1)

    @model_validator(mode="after")
    def _tag_names_are_unique(self) -> Self:
        seen: dict[str, int] = {}
        for index, tag in enumerate(self.tags):
            if tag.name in seen:
                raise ValueError(
                    f"tags[{index}] and tags[{seen[tag.name]}] are both named {tag.name!r}. "
                    "Fix: give every tag of a machine its own name"
                )
            seen[tag.name] = index
        if self.connect_timeout is not None and self.connect_timeout <= 0:
            raise ValueError(
                f"connect_timeout must be greater than 0 (got {self.connect_timeout:g} s). Fix: set e.g. "
                "connect_timeout: 5s"
            )
        return self

    @property
    def effective_connect_timeout(self) -> float:
        """The time connecting may take: ``connect_timeout``, else the poll timeout."""
        return self.connect_timeout if self.connect_timeout is not None else self.effective_timeout

    def build_connector(self) -> Connector:
        """Make the connector for this machine."""
        from connectors.opcua.client import OpcUaConnector

        return OpcUaConnector(self)
