"""Config of a Modbus machine: where it is (TCP or a serial line), the register map to read, the device's quirks."""

from __future__ import annotations

import difflib
from typing import TYPE_CHECKING, Any, Literal, Self, get_args

from pydantic import Field, ValidationError, ValidationInfo, field_validator, model_validator
from pydantic_core import InitErrorDetails

from connectors.base import POLL_BUDGET, MachineConfigBase
from connectors.modbus.serial_line import SerialLine
from edge_agent.core.config_base import TAG_NAME_PATTERN, StrictModel
from edge_agent.core.durations import Duration

if TYPE_CHECKING:
    from connectors.base import Connector

DataType = Literal["bool", "int16", "uint16", "int32", "uint32", "float32", "int64", "uint64", "float64", "string"]
ByteOrder = Literal["ABCD", "DCBA", "BADC", "CDAB"]
Table = Literal["holding", "input", "coil", "discrete_input"]

_CHOICES: dict[str, Any] = {"type": DataType, "byte_order": ByteOrder, "table": Table}
_ALIASES: dict[str, str] = {
    "float": "float32",
    "real": "float32",
    "double": "float64",
    "lreal": "float64",
    "int": "int16",
    "word": "uint16",
    "dword": "uint32",
    "dint": "int32",
    "udint": "uint32",
    "boolean": "bool",
    "str": "string",
    "holding_register": "holding",
    "input_register": "input",
    "coils": "coil",
    "discrete": "discrete_input",
    "discrete_inputs": "discrete_input",
}
"""Names from PLC manuals and other tools, offered as suggestions in errors (never accepted silently)."""

REGISTER_TABLES: frozenset[str] = frozenset({"holding", "input"})
BIT_TABLES: frozenset[str] = frozenset({"coil", "discrete_input"})

REGISTER_COUNT: dict[str, int] = {
    "bool": 1,
    "int16": 1,
    "uint16": 1,
    "int32": 2,
    "uint32": 2,
    "float32": 2,
    "int64": 4,
    "uint64": 4,
    "float64": 4,
}
"""How many 16-bit registers each fixed-size data type spans (a string spans ``length``)."""

LAST_ADDRESS = 65535
"""The highest address Modbus can express (addresses are 16-bit)."""

MAX_REGISTERS_PER_REQUEST = 125
"""The protocol's limit for one read of holding or input registers (function codes 3 and 4)."""

MAX_BITS_PER_REQUEST = 2000
"""The protocol's limit for one read of coils or discrete inputs (function codes 1 and 2)."""


class ModbusTag(StrictModel):
    """One value in the device's map.

    ``address`` is the register (or coil) address as counted by the machine's ``address_base``:
    with the default base 0 it is the address on the wire, so register 40001 of a one-based
    manual is address 0 of the holding table. The value read is ``raw * scale + offset``.
    ``byte_order`` names the order in which the bytes of a value arrive: ABCD is big-endian
    (Modbus's own), CDAB swaps the 16-bit words, BADC swaps the bytes inside each word.
    """

    name: str = Field(pattern=TAG_NAME_PATTERN)
    table: Table = "holding"
    address: int = Field(ge=0, le=LAST_ADDRESS)
    type: DataType = Field(default="uint16", description="Default: uint16; bool for coils and discrete inputs.")
    byte_order: ByteOrder = "ABCD"
    bit: int | None = Field(
        default=None, ge=0, le=15, description="For a bool in a register: the bit, 0 = least significant."
    )
    length: int | None = Field(
        default=None, ge=1, le=MAX_REGISTERS_PER_REQUEST, description="For a string: registers (2 characters each)."
    )
    scale: float = Field(default=1.0, allow_inf_nan=False)
    offset: float = Field(default=0.0, allow_inf_nan=False)
    unit_id: int | None = Field(default=None, ge=0, le=255, description="Overrides the machine's unit_id.")
    unit: str | None = None

    @model_validator(mode="before")
    @classmethod
    def _bits_are_bool_by_default(cls, data: Any) -> Any:
        if (
            isinstance(data, dict)
            and isinstance(data.get("table"), str)
            and data["table"] in BIT_TABLES
            and "type" not in data
        ):
            return {**data, "type": "bool"}
        return data

    @field_validator("type", "byte_order", "table", mode="before")
    @classmethod
    def _known_choice(cls, value: Any, info: ValidationInfo) -> Any:
        choices: tuple[str, ...] = get_args(_CHOICES[info.field_name or ""])
        if isinstance(value, str) and value not in choices:
            close = [_ALIASES[value.lower()]] if value.lower() in _ALIASES else []
            close = close or difflib.get_close_matches(value, choices, n=1, cutoff=0.6)
            hint = f"did you mean {close[0]!r}? " if close else ""
            listed = ", ".join(repr(choice) for choice in choices)
            raise ValueError(f"unknown {info.field_name} (got {value!r}). Fix: {hint}use one of {listed}")
        return value

    @field_validator("address", mode="before")
    @classmethod
    def _address_in_range(cls, value: Any) -> Any:
        if isinstance(value, int) and not isinstance(value, bool) and not 0 <= value <= LAST_ADDRESS:
            raise ValueError(
                f"address is outside 0-{LAST_ADDRESS}, the addresses Modbus can express (got {value}). Fix: use "
                "the register's offset within its table (40001 in a manual is address 0 of the holding table)"
            )
        return value

    @property
    def is_bit_table(self) -> bool:
        """True for coils and discrete inputs (read as bits, function codes 1 and 2)."""
        return self.table in BIT_TABLES

    @property
    def register_count(self) -> int:
        """Registers this tag spans (bits, for coils and discrete inputs)."""
        if self.type == "string":
            return self.length or 1
        return 1 if self.is_bit_table else REGISTER_COUNT[self.type]

    @property
    def end(self) -> int:
        """One past the last register (or bit) this tag spans, in config addressing."""
        return self.address + self.register_count

    @model_validator(mode="after")
    def _keys_fit_the_type(self) -> Self:
        where = f"tag {self.name!r}"
        if self.is_bit_table:
            if self.type != "bool":
                raise ValueError(
                    f"{where}: the {self.table} table holds single bits, so type must be bool (got {self.type}). "
                    "Fix: remove type, or use table: holding / input for numbers"
                )
            if self.bit is not None:
                raise ValueError(
                    f"{where}: bit applies to a bool in a register, not to a {self.table}. Fix: remove bit"
                )
        elif self.type == "bool" and self.bit is None:
            raise ValueError(
                f"{where}: a bool in the {self.table} table needs bit: which bit of the register (0 = least "
                "significant, 15 = most). Fix: add e.g. bit: 0, or use table: coil / discrete_input"
            )
        if self.bit is not None and self.type != "bool":
            raise ValueError(
                f"{where}: bit only applies to type bool (got {self.type}). Fix: set type: bool or remove bit"
            )
        if self.type == "string" and self.length is None:
            raise ValueError(
                f"{where}: a string needs length: how many registers it spans (2 characters each). "
                "Fix: add e.g. length: 8"
            )
        if self.length is not None and self.type != "string":
            raise ValueError(f"{where}: length only applies to type string (got {self.type}). Fix: remove length")
        if self.type in ("bool", "string") and (self.scale != 1.0 or self.offset != 0.0):
            raise ValueError(f"{where}: scale and offset do not apply to a {self.type}. Fix: remove them")
        if self.is_bit_table and self.byte_order != "ABCD":
            raise ValueError(f"{where}: byte_order does not apply to a {self.table}. Fix: remove byte_order")
        if self.end - 1 > LAST_ADDRESS:
            article = "an" if self.type.startswith("int") else "a"
            what = f"a string of length {self.register_count}" if self.type == "string" else f"{article} {self.type}"
            raise ValueError(
                f"{where}: {what} at address {self.address} spans {self.address}-{self.end - 1}, past the last "
                f"Modbus address {LAST_ADDRESS}. Fix: correct the address (at most "
                f"{LAST_ADDRESS - self.register_count + 1} for {what})"
            )
        return self


def _describe(index: int, tag: ModbusTag) -> str:
    span = f"{tag.address}" if tag.register_count == 1 else f"{tag.address}-{tag.end - 1}"
    return f"tags[{index}] {tag.name!r} ({tag.table} {span}, {tag.type} {tag.byte_order})"


class ModbusMachine(MachineConfigBase):
    """A machine read over Modbus TCP or RTU on a serial line (function codes 1 to 4 only: never a write).

    Exactly one of ``host`` (TCP, with ``port`` and ``framing``) and ``serial`` says where it is.
    """

    type: Literal["modbus"]
    host: str | None = Field(
        default=None,
        min_length=1,
        description="the device or gateway, for Modbus TCP; for a device on this computer's serial port "
        "set serial: {device: /dev/ttyUSB0} instead",
    )
    serial: SerialLine | None = Field(default=None, description="The serial port, for Modbus RTU on a serial line.")
    port: int = Field(default=502, ge=1, le=65535)
    framing: Literal["tcp", "rtu_over_tcp"] = Field(
        default="tcp", description="rtu_over_tcp: RTU frames in the TCP stream (transparent serial gateways)."
    )
    tcp_client: Literal["lean", "pymodbus"] = Field(
        default="lean",
        description="framing tcp: the connector's own read-only client (half the CPU per request), or "
        "pymodbus's, for a device that misbehaves with the lean one.",
    )
    unit_id: int = Field(default=1, ge=0, le=255)
    address_base: Literal[0, 1] = Field(
        default=0, description="1 when the addresses in this section count from 1, as many manuals do."
    )
    max_gap: int = Field(
        default=10,
        ge=0,
        le=MAX_REGISTERS_PER_REQUEST - 1,
        description="Unused registers one read may span to join two tags into one request.",
    )
    max_registers_per_request: int = Field(default=MAX_REGISTERS_PER_REQUEST, ge=1, le=MAX_REGISTERS_PER_REQUEST)
    max_bits_per_request: int = Field(default=MAX_BITS_PER_REQUEST, ge=1, le=MAX_BITS_PER_REQUEST)
    one_request_per_tag: bool = False
    request_timeout: Duration | None = Field(
        default=None, description="Time one request may take; default: what is left of the poll's timeout."
    )
    pause_after_connect: Duration = Field(default=0.0, le=60, description="Silence after connecting (at most 60 s).")
    pause_between_requests: Duration = Field(default=0.0, le=60, description="Silence between two requests.")
    close_after_cycle: bool = False
    tags: list[ModbusTag] = Field(min_length=1)

    @model_validator(mode="before")
    @classmethod
    def _somewhere(cls, data: Any) -> Any:
        """Neither host nor serial: report host as the missing key (most machines are on TCP)."""
        if isinstance(data, dict) and "host" not in data and "serial" not in data:
            missing = InitErrorDetails(type="missing", loc=("host",), input=data)
            raise ValidationError.from_exception_data(cls.__name__, [missing])
        return data

    @model_validator(mode="after")
    def _one_way_to_reach_it(self) -> Self:
        if self.host is None and self.serial is None:
            raise ValueError(
                "where is the machine? Fix: add host: (and port:) for Modbus TCP, or serial: {device: /dev/ttyUSB0} "
                "for Modbus RTU on a serial line"
            )
        if self.host is not None and self.serial is not None:
            raise ValueError(
                f"host ({self.host}) and serial ({self.serial.device}) are both set, but a machine is reached one "
                "way. Fix: keep host for a TCP device or gateway, or serial for a device on this computer's "
                "serial port"
            )
        if self.serial is not None and self.port != 502:
            raise ValueError(
                f"port ({self.port}) is the TCP port and does not apply to a serial line. Fix: remove port; "
                "the serial port is serial.device"
            )
        if self.serial is not None and self.framing != "tcp":
            raise ValueError("framing applies to TCP; a serial line always carries RTU frames. Fix: remove framing")
        if self.tcp_client != "lean" and (self.serial is not None or self.framing != "tcp"):
            raise ValueError(
                "tcp_client chooses the client for framing: tcp; RTU frames (serial, rtu_over_tcp) always go "
                "through pymodbus. Fix: remove tcp_client"
            )
        return self

    @property
    def endpoint(self) -> str:
        """Where the machine is, for messages: 'host:port' or the serial port with its settings."""
        return self.serial.describe() if self.serial is not None else f"{self.host}:{self.port}"

    @model_validator(mode="after")
    def _tags_are_consistent(self) -> Self:
        problems: list[str] = []
        for name in ("pause_after_connect", "pause_between_requests"):
            if getattr(self, name) < 0:
                problems.append(f"{name} must not be negative. Fix: set e.g. {name}: 100ms, or remove it")
        if self.request_timeout is not None and not 0 < self.request_timeout < self.effective_timeout:
            problems.append(
                f"request_timeout ({self.request_timeout:g} s) must be greater than 0 and shorter than the poll's "
                f"timeout ({self.effective_timeout:g} s). Fix: lower request_timeout, or raise timeout"
            )
        seen: dict[str, int] = {}
        for index, tag in enumerate(self.tags):
            if tag.name in seen:
                problems.append(
                    f"tags[{index}] and tags[{seen[tag.name]}] are both named {tag.name!r}. "
                    "Fix: give every tag of a machine its own name"
                )
            seen.setdefault(tag.name, index)
            if self.address_base == 1 and tag.address == 0:
                problems.append(
                    f"tags[{index}] {tag.name!r} has address 0, but address_base is 1 (addresses count from 1). "
                    "Fix: use the address from the manual (the first one is 1), or set address_base: 0"
                )
            if not tag.is_bit_table and tag.register_count > self.max_registers_per_request:
                problems.append(
                    f"tags[{index}] {tag.name!r} spans {tag.register_count} registers, more than "
                    f"max_registers_per_request ({self.max_registers_per_request}). Fix: shorten the tag or raise "
                    "max_registers_per_request"
                )
        words = [(i, t) for i, t in enumerate(self.tags) if not t.is_bit_table and t.type != "bool"]
        indexed = sorted(words, key=lambda item: (self.unit_of(item[1]), item[1].table, item[1].address))
        for position, (i, first) in enumerate(indexed):
            for j, second in indexed[position + 1 :]:
                same_space = (self.unit_of(second), second.table) == (self.unit_of(first), first.table)
                if not same_space or second.address >= first.end:
                    break
                same_view = (first.address, first.type, first.byte_order, first.length) == (
                    second.address,
                    second.type,
                    second.byte_order,
                    second.length,
                )
                if not same_view:
                    problems.append(
                        f"{_describe(i, first)} and {_describe(j, second)} overlap but decode the shared "
                        "registers differently. Fix: correct one of the addresses, or give both tags the "
                        "same address, type and byte_order"
                    )
        if problems:
            raise ValueError("; ".join(problems))
        return self

    @model_validator(mode="after")
    def _pauses_fit_in_a_poll(self) -> Self:
        from connectors.modbus.plan import PlanOptions, plan_requests

        requests = len(plan_requests(self.tags, PlanOptions.of(self)))
        waiting = self.pause_between_requests * (requests - 1)
        if self.close_after_cycle:
            waiting += self.pause_after_connect
        budget = self.effective_timeout * POLL_BUDGET
        if waiting > 0 and waiting >= budget:
            raise ValueError(
                f"one poll sends {requests} request(s) and pauses {waiting:g} s in total "
                f"(pause_between_requests{' and pause_after_connect' if self.close_after_cycle else ''}), "
                f"which leaves no time within the poll's timeout ({self.effective_timeout:g} s, 90 % usable). "
                "Fix: raise interval (and timeout), or lower the pauses"
            )
        return self

    def unit_of(self, tag: ModbusTag) -> int:
        """The unit id a tag is read from: its own, else the machine's."""
        return self.unit_id if tag.unit_id is None else tag.unit_id

    def build_connector(self) -> Connector:
        """Make the connector for this machine."""
        from connectors.modbus.client import ModbusConnector

        return ModbusConnector(self)
