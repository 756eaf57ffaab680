"""Config of a Modbus TCP machine: where it is and the register map to read."""

from __future__ import annotations

from typing import TYPE_CHECKING, Literal

from pydantic import Field

from connectors.base import TAG_NAME_PATTERN, MachineConfigBase, StrictModel

if TYPE_CHECKING:
    from connectors.base import Connector

DataType = Literal["int16", "uint16", "int32", "uint32", "float32"]
ByteOrder = Literal["ABCD", "DCBA", "BADC", "CDAB"]

REGISTER_COUNT: dict[str, int] = {"int16": 1, "uint16": 1, "int32": 2, "uint32": 2, "float32": 2}
"""How many 16-bit registers each data type spans."""


class ModbusTag(StrictModel):
    """One value in the register map.

    ``address`` is the zero-based register address on the wire (register 40001 in a vendor's
    one-based manual is address 0 of the holding table). The value read is
    ``raw * scale + offset``. ``byte_order`` names the order of the four bytes of a 32-bit
    value as they arrive: ABCD is big-endian (Modbus's own), CDAB swaps the two words.
    """

    name: str = Field(pattern=TAG_NAME_PATTERN)
    table: Literal["holding", "input"] = "holding"
    address: int = Field(ge=0, le=65535)
    type: DataType = "uint16"
    byte_order: ByteOrder = "ABCD"
    scale: float = 1.0
    offset: float = 0.0
    unit: str | None = None

    @property
    def register_count(self) -> int:
        """Registers this tag spans."""
        return REGISTER_COUNT[self.type]


class ModbusMachine(MachineConfigBase):
    """A machine read over Modbus TCP (function codes 3 and 4 only: never a write)."""

    type: Literal["modbus"]
    host: str
    port: int = Field(default=502, ge=1, le=65535)
    unit_id: int = Field(default=1, ge=0, le=255)
    tags: list[ModbusTag] = Field(min_length=1)

    def build_connector(self) -> Connector:
        """Make the connector for this machine."""
        from connectors.modbus.client import ModbusConnector

        return ModbusConnector(self)
