"""Config of an OPC UA machine: the endpoint, how to log in, and which nodes to read."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal, Self

from pydantic import Field, GetJsonSchemaHandler, SecretStr, field_validator, model_validator
from pydantic.json_schema import JsonSchemaValue
from pydantic_core import CoreSchema

from connectors.base import MachineConfigBase
from edge_agent.core.config_base import TAG_NAME_PATTERN, StrictModel
from edge_agent.core.durations import Duration

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
    index: int | None = Field(
        default=None, ge=0, le=2**31 - 1, description="For an array node: the element to read (0 is the first)."
    )
    max_age: Duration | None = Field(
        default=None, description="A value whose source timestamp is older than this is uncertain."
    )
    sampling_interval: Duration | None = Field(
        default=None, description="Subscribe mode: overrides the machine's sampling_interval."
    )
    deadband: float | None = Field(
        default=None, ge=0, allow_inf_nan=False, description="Subscribe mode: overrides the machine's deadband."
    )

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


SecurityPolicyName = Literal["auto", "Aes256_Sha256_RsaPss", "Aes128_Sha256_RsaOaep", "Basic256Sha256", "None"]
SecurityModeName = Literal["SignAndEncrypt", "Sign", "None"]


class OpcUaSecurity(StrictModel):
    """Transport security: signed and encrypted by default, ``None`` only when written out.

    ``security: none`` is short for ``{policy: None, mode: None}``: no signing, no encryption,
    for a server on a trusted network that offers nothing else.
    """

    policy: SecurityPolicyName = Field(
        default="auto",
        description="auto: the strongest the server offers (Aes256_Sha256_RsaPss > Aes128_Sha256_RsaOaep > "
        "Basic256Sha256). None only together with mode None.",
    )
    mode: SecurityModeName = Field(default="SignAndEncrypt", description="SignAndEncrypt, Sign, or None.")
    trust_on_first_use: bool = Field(
        default=False,
        description="Trust the first server certificate seen at this endpoint; refuse any other one later.",
    )
    pki_dir: str | None = Field(
        default=None, description="Trust store folder; default: $STATE_DIRECTORY/pki (see the OPC UA README)."
    )
    certificate: str | None = Field(
        default=None, description="The agent's own application certificate (DER or PEM); default: made in pki_dir."
    )
    private_key: str | None = Field(default=None, description="The private key of `certificate` (PEM or DER).")

    @classmethod
    def __get_pydantic_json_schema__(cls, core_schema: CoreSchema, handler: GetJsonSchemaHandler) -> JsonSchemaValue:
        """Editors accept the ``security: none`` shorthand as well as the mapping."""
        schema = handler(core_schema)
        shorthand = {"type": "string", "enum": ["none", "None"], "description": "No signing, no encryption."}
        return {"anyOf": [shorthand, schema]}

    @model_validator(mode="before")
    @classmethod
    def _shorthand(cls, data: Any) -> Any:
        if isinstance(data, str):
            if data.strip().lower() == "none":
                return {"policy": "None", "mode": "None"}
            raise ValueError(
                f"security must be 'none' or a mapping such as {{policy: auto, mode: SignAndEncrypt}}, not {data!r}. "
                "Fix: remove security (signed and encrypted by default), or write security: none"
            )
        return data

    @model_validator(mode="after")
    def _policy_and_mode_agree(self) -> Self:
        if self.policy == "None" and self.mode != "None":
            raise ValueError(
                f"security.policy None sends everything unsigned, which contradicts mode {self.mode}. "
                "Fix: remove policy (the strongest the server offers), or write security: none to turn "
                "security off (only on a trusted network)"
            )
        if self.mode == "None" and self.policy != "None":
            raise ValueError(
                f"security.mode None turns security off, which contradicts policy {self.policy}. "
                "Fix: write mode: SignAndEncrypt (or Sign), or security: none to turn security off "
                "(only on a trusted network)"
            )
        if (self.certificate is None) != (self.private_key is None):
            given, missing = (
                ("certificate", "private_key") if self.private_key is None else ("private_key", "certificate")
            )
            raise ValueError(
                f"security.{given} is set but security.{missing} is not. Fix: give both (the agent's certificate "
                "and its key), or neither and the agent makes its own"
            )
        for key in ("pki_dir", "certificate", "private_key"):
            value = getattr(self, key)
            if value is not None and not (value.startswith(("/", "~")) or "${" in value):
                raise ValueError(
                    f"security.{key} {value!r} is a relative path, which would depend on the directory the agent "
                    "is started from (/ under systemd). Fix: write it as an absolute path, "
                    "e.g. /var/lib/edge-agent/pki"
                )
        if self.enabled is False:
            for key in ("trust_on_first_use", "certificate"):
                if getattr(self, key):
                    raise ValueError(
                        f"security.{key} has no effect with security none (no certificates are exchanged). "
                        f"Fix: remove {key}, or turn security on"
                    )
        return self

    @property
    def enabled(self) -> bool:
        """Whether the channel is signed (and maybe encrypted), i.e. certificates are used."""
        return self.policy != "None"

    @property
    def effective_pki_dir(self) -> Path:
        """``pki_dir``, else ``<state dir>/pki`` (resolved when asked: the environment may change)."""
        from connectors.opcua.pki import default_pki_dir

        return Path(self.pki_dir).expanduser() if self.pki_dir else default_pki_dir()


class OpcUaMachine(MachineConfigBase):
    """A machine read over OPC UA (client side of the protocol, read-only)."""

    type: Literal["opcua"]
    endpoint: str = Field(pattern=r"^opc\.tcp://", description="opc.tcp://host:port/path")
    security: OpcUaSecurity = Field(
        default_factory=OpcUaSecurity,
        description="Signed and encrypted by default; 'none' (or {policy: None, mode: None}) turns it off.",
    )
    username: str | None = None
    password: SecretStr | None = None
    user_certificate: str | None = Field(
        default=None, description="X.509 user login: the user's certificate (DER or PEM); needs user_private_key."
    )
    user_private_key: str | None = Field(default=None, description="X.509 user login: the key of user_certificate.")
    units_from_server: bool = Field(
        default=True, description="Tags without a unit take the one in the node's EngineeringUnits property."
    )
    connect_timeout: Duration | None = Field(
        default=None,
        le=600,
        description="Time connecting may take (session, lookups, subscription); default: timeout, at least 5 s.",
    )
    max_nodes_per_read: int | None = Field(
        default=None, ge=1, le=100_000, description="Nodes per Read request; default: the server's MaxNodesPerRead."
    )
    max_age: Duration | None = Field(
        default=None, description="A value whose source timestamp is older than this is uncertain."
    )
    mode: Literal["poll", "subscribe"] = Field(
        default="poll", description="poll: one Read per interval; subscribe: monitored items report changes."
    )
    sampling_interval: Duration | None = Field(
        default=None, description="Subscribe mode: how often the server samples each node; default: interval."
    )
    queue_size: int = Field(
        default=10, ge=1, le=10000, description="Subscribe mode: changes the server keeps per node."
    )
    deadband: float = Field(
        default=0.0, ge=0, allow_inf_nan=False, description="Subscribe mode: the change a number must make to be sent."
    )
    deadband_type: Literal["absolute", "percent"] = "absolute"
    max_queued_samples: int | None = Field(
        default=None,
        ge=1,
        le=10_000_000,
        description="Subscribe mode: changes kept between two reads; the oldest go first. "
        "Default: 10 per tag, at least 10000.",
    )
    tags: list[OpcUaTag] = Field(min_length=1)

    @model_validator(mode="after")
    def _subscribe_keys_need_subscribe_mode(self) -> Self:
        # Keys that differ from their defaults, not keys that were written: a full dump of a valid
        # config (defaults included) must validate again.
        subscribe_keys = ("sampling_interval", "queue_size", "deadband", "deadband_type", "max_queued_samples")
        if self.mode == "poll":
            for key in subscribe_keys:
                if getattr(self, key) != type(self).model_fields[key].default:
                    raise ValueError(
                        f"{key} only applies with mode: subscribe. Fix: remove {key} or set mode: subscribe"
                    )
            for index, tag in enumerate(self.tags):
                for key in ("sampling_interval", "deadband"):
                    if getattr(tag, key) is not None:
                        raise ValueError(
                            f"tags[{index}] {tag.name!r}: {key} only applies with mode: subscribe. "
                            f"Fix: remove {key} or set mode: subscribe"
                        )
        return self

    @model_validator(mode="after")
    def _durations_are_sane(self) -> Self:
        ages = [("max_age", self.max_age)] + [(f"tags[{i}].max_age", t.max_age) for i, t in enumerate(self.tags)]
        for where, value in ages:
            if value is not None and value <= 0:
                raise ValueError(f"{where} must be greater than 0 (got {value:g} s). Fix: set e.g. 10s, or remove it")
        intervals = [("sampling_interval", self.sampling_interval)] + [
            (f"tags[{i}].sampling_interval", t.sampling_interval) for i, t in enumerate(self.tags)
        ]
        for where, value in intervals:
            if value is not None and value < 0:
                raise ValueError(
                    f"{where} must not be negative (got {value:g} s; 0 means as fast as the server can). "
                    "Fix: set e.g. 500ms, or remove it"
                )
        if self.deadband_type == "percent" and self.deadband > 100:
            raise ValueError(f"a percent deadband must be within 0-100 (got {self.deadband:g}). Fix: lower deadband")
        if self.connect_timeout is not None and self.connect_timeout <= 0:
            raise ValueError(
                f"connect_timeout must be greater than 0 (got {self.connect_timeout:g} s). Fix: set e.g. "
                "connect_timeout: 5s"
            )
        return self

    @field_validator("endpoint")
    @classmethod
    def _no_credentials_in_endpoint(cls, endpoint: str) -> str:
        authority = endpoint.removeprefix("opc.tcp://").split("/", 1)[0]
        if "@" in authority:
            raise ValueError(
                "the endpoint holds a user name or password (user:password@host), which would show up in logs "
                "and status pages. Fix: remove it from the endpoint and use the username and password keys"
            )
        return endpoint

    @model_validator(mode="after")
    def _one_way_to_log_in(self) -> Self:
        if (self.user_certificate is None) != (self.user_private_key is None):
            given, missing = (
                ("user_certificate", "user_private_key")
                if self.user_private_key is None
                else ("user_private_key", "user_certificate")
            )
            raise ValueError(f"{given} is set but {missing} is not. Fix: give both for X.509 user login, or neither")
        if self.user_certificate is not None and (self.username is not None or self.password is not None):
            raise ValueError(
                "user_certificate and username/password are two ways to log in; a session uses one. "
                "Fix: remove username and password, or user_certificate and user_private_key"
            )
        if self.password is not None and self.username is None:
            raise ValueError("password is set but username is not. Fix: add username, or remove password")
        for key in ("user_certificate", "user_private_key"):
            value = getattr(self, key)
            if value is not None and not value.startswith(("/", "~")):
                raise ValueError(
                    f"{key} {value!r} is a relative path, which would depend on the directory the agent is "
                    "started from (/ under systemd). Fix: write it as an absolute path"
                )
        return self

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
        return self

    @property
    def effective_max_queued_samples(self) -> int:
        """Changes kept between two reads: the configured bound, else 10 per tag (at least 10,000).

        A fixed 10,000 dropped half the changes of 5,000 items whenever the server packed two
        sampling intervals into one publish (bench/opcua_throughput.py); 10 per tag leaves room for
        a read that comes late, at about 2 kB per tag at worst.
        """
        if self.max_queued_samples is not None:
            return self.max_queued_samples
        return max(10000, 10 * len(self.tags))

    def max_age_of(self, tag: OpcUaTag) -> float | None:
        """The staleness limit of a tag in seconds: its own, else the machine's (None: no limit)."""
        return tag.max_age if tag.max_age is not None else self.max_age

    def sampling_interval_of(self, tag: OpcUaTag) -> float:
        """Subscribe mode: seconds between two samples of a tag's node by the server."""
        if tag.sampling_interval is not None:
            return tag.sampling_interval
        return self.sampling_interval if self.sampling_interval is not None else self.interval

    def deadband_of(self, tag: OpcUaTag) -> float:
        """Subscribe mode: the deadband of a tag (0: every change)."""
        return tag.deadband if tag.deadband is not None else self.deadband

    @property
    def effective_connect_timeout(self) -> float:
        """The time connecting may take: ``connect_timeout``, else the poll timeout but at least 5 s.

        A secure handshake (endpoints, channel, session, namespace lookup) takes several round
        trips; holding it to the poll timeout of a fast-polled machine (80 ms at 100 ms) made
        every connect on a busy box or a real network fail, for ever. The poller allows the same
        (``edge_agent.runtime.poller.connect_limit``).
        """
        if self.connect_timeout is not None:
            return self.connect_timeout
        return max(self.effective_timeout, 5.0)

    def build_connector(self) -> Connector:
        """Make the connector for this machine."""
        from connectors.opcua.client import OpcUaConnector

        return OpcUaConnector(self)
