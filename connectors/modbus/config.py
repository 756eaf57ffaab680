"""Config of a Modbus TCP machine: where it is and the register map to read."""

from __future__ import annotations

from typing import TYPE_CHECKING, Literal, Self

from pydantic import Field, model_validator

from connectors.base import TAG_NAME_PATTERN, MachineConfigBase, StrictModel

if TYPE_CHECKING:
    from connectors.base import Connector

DataType = Literal["int16", "uint16", "int32", "uint32", "float32"]
ByteOrder = Literal["ABCD", "DCBA", "BADC", "CDAB"]
Table = Literal["holding", "input"]

REGISTER_COUNT: dict[str, int] = {"int16": 1, "uint16": 1, "int32": 2, "uint32": 2, "float32": 2}
"""How many 16-bit registers each data type spans."""

LAST_ADDRESS = 65535
"""The highest register address Modbus can express (addresses are 16-bit)."""

MAX_REGISTERS_PER_REQUEST = 125
"""The protocol's limit for one read of holding or input registers (function codes 3 and 4)."""


class ModbusTag(StrictModel):
    """One value in the register map.

    ``address`` is the zero-based register address on the wire (register 40001 in a vendor's
    one-based manual is address 0 of the holding table). The value read is
    ``raw * scale + offset``. ``byte_order`` names the order of the four bytes of a 32-bit
    value as they arrive: ABCD is big-endian (Modbus's own), CDAB swaps the two words.
    """

    name: str = Field(pattern=TAG_NAME_PATTERN)
    table: Table = "holding"
    address: int = Field(ge=0, le=LAST_ADDRESS)
    type: DataType = "uint16"
    byte_order: ByteOrder = "ABCD"
    scale: float = 1.0
    offset: float = 0.0
    unit: str | None = None

    @property
    def register_count(self) -> int:
        """Registers this tag spans."""
        return REGISTER_COUNT[self.type]

    @property
    def end(self) -> int:
        """One past the last register this tag spans."""
        return self.address + self.register_count

    @model_validator(mode="after")
    def _fits_in_address_space(self) -> Self:
        if self.end - 1 > LAST_ADDRESS:
            raise ValueError(
                f"tag {self.name!r}: a {self.type} at address {self.address} spans registers "
                f"{self.address}-{self.end - 1}, past the last Modbus register {LAST_ADDRESS}. "
                f"Fix: correct the address (at most {LAST_ADDRESS - self.register_count + 1} for a {self.type})"
            )
        return self


def _describe(index: int, tag: ModbusTag) -> str:
    span = f"{tag.address}" if tag.register_count == 1 else f"{tag.address}-{tag.end - 1}"
    return f"tags[{index}] {tag.name!r} ({tag.table} {span}, {tag.type} {tag.byte_order})"


class ModbusMachine(MachineConfigBase):
    """A machine read over Modbus TCP (function codes 3 and 4 only: never a write)."""

    type: Literal["modbus"]
    host: str
    port: int = Field(default=502, ge=1, le=65535)
    unit_id: int = Field(default=1, ge=0, le=255)
    max_gap: int = Field(
        default=10,
        ge=0,
        le=MAX_REGISTERS_PER_REQUEST - 1,
        description="Unused registers one read may span to join two tags into one request.",
    )
    tags: list[ModbusTag] = Field(min_length=1)

    @model_validator(mode="after")
    def _tags_are_consistent(self) -> Self:
        problems: list[str] = []
        seen: dict[str, int] = {}
        for index, tag in enumerate(self.tags):
            if tag.name in seen:
                problems.append(
                    f"tags[{index}] and tags[{seen[tag.name]}] are both named {tag.name!r}. "
                    "Fix: give every tag of a machine its own name"
                )
            seen.setdefault(tag.name, index)
        indexed = sorted(enumerate(self.tags), key=lambda item: (item[1].table, item[1].address))
        for position, (i, first) in enumerate(indexed):
            for j, second in indexed[position + 1 :]:
                if second.table != first.table or second.address >= first.end:
                    break
                same_view = (first.address, first.type, first.byte_order) == (
                    second.address,
                    second.type,
                    second.byte_order,
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

    def build_connector(self) -> Connector:
        """Make the connector for this machine."""
        from connectors.modbus.client import ModbusConnector

        return ModbusConnector(self)
