"""Register responses parsed in one ``struct`` call, registered with each pymodbus client the connector opens.

pymodbus parses the answer to a register read (function codes 3 and 4) one register at a time
in Python, and formats every register into a string for a debug log line even when debug logging
is off. For a 125-register answer that was a third of a request's cost on the client side. These
subclasses produce the same ``registers`` (same values, same checks) with one ``struct.unpack``
and a short ``str()``. They only read: the request side of the protocol is untouched.
"""

from __future__ import annotations

import struct
from collections.abc import Sequence

from pymodbus.exceptions import ModbusIOException
from pymodbus.pdu.register_message import ReadHoldingRegistersResponse, ReadInputRegistersResponse

_SHOWN = 8
"""Registers shown by ``str()``; the rest are counted."""


def parse_registers(data: bytes, function_code: int) -> list[int]:
    """The registers of a register-read answer (``data``: byte count, then the register bytes)."""
    byte_count = int(data[0])
    if byte_count >= len(data):
        raise ModbusIOException(f"byte_count {byte_count} > length of packet {len(data)}", function_code=function_code)
    return list(struct.unpack_from(f">{byte_count // 2}H", data, 1))


def _summary(name: str, dev_id: int, transaction_id: int, registers: Sequence[int]) -> str:
    shown = ", ".join(map(str, registers[:_SHOWN]))
    more = f", ... ({len(registers)} registers)" if len(registers) > _SHOWN else ""
    return f"{name}(dev_id={dev_id}, transaction_id={transaction_id}, registers=[{shown}{more}])"


class FastHoldingRegistersResponse(ReadHoldingRegistersResponse):
    """Function code 3's answer, parsed in one call."""

    def decode(self, data: bytes) -> None:
        """Set ``registers`` from the answer's bytes."""
        self.registers = parse_registers(data, self.function_code)

    def __str__(self) -> str:
        return _summary(type(self).__name__, self.dev_id, self.transaction_id, self.registers)


class FastInputRegistersResponse(ReadInputRegistersResponse):
    """Function code 4's answer, parsed in one call."""

    def decode(self, data: bytes) -> None:
        """Set ``registers`` from the answer's bytes."""
        self.registers = parse_registers(data, self.function_code)

    def __str__(self) -> str:
        return _summary(type(self).__name__, self.dev_id, self.transaction_id, self.registers)


FAST_RESPONSES = (FastHoldingRegistersResponse, FastInputRegistersResponse)
"""Register these with ``client.register(...)`` after creating a pymodbus client."""
