"""Pure conversions from Modbus registers to values. No sockets here: every function is unit-tested alone.

Byte order names the order in which the bytes of a value arrive on the wire, with ``A`` the most
significant byte. Modbus itself is big-endian within a register, so ``ABCD`` is plain big-endian;
``CDAB`` reverses the order of the registers ("word swap"), ``BADC`` swaps the two bytes inside
each register, ``DCBA`` does both (plain little-endian). For 16-bit types only the byte swap
matters (``BADC`` and ``DCBA`` swap, ``ABCD`` and ``CDAB`` do not). For 64-bit types the same
names apply word-wise: ``CDAB`` means the four registers arrive in reverse order (``GHEFCDAB``),
``DCBA`` is plain little-endian (``HGFEDCBA``).

A string is the registers' bytes in order, high byte first (``ABCD``; ``BADC`` or ``DCBA`` swap
the two characters of each register), cut at the first NUL and stripped of trailing spaces.
"""

from __future__ import annotations

import math
import struct
from collections.abc import Sequence

from edge_agent.core.errors import DecodeError
from edge_agent.core.samples import Value

EXCEPTION_NAMES: dict[int, str] = {
    1: "illegal function",
    2: "illegal data address",
    3: "illegal data value",
    4: "server device failure",
    5: "acknowledge",
    6: "server device busy",
    7: "negative acknowledge",
    8: "memory parity error",
    10: "gateway path unavailable",
    11: "gateway target device failed to respond",
}
"""Modbus exception codes as the specification names them."""

_FORMATS: dict[str, str] = {
    "int16": ">h",
    "uint16": ">H",
    "int32": ">i",
    "uint32": ">I",
    "float32": ">f",
    "int64": ">q",
    "uint64": ">Q",
    "float64": ">d",
}


def exception_reason(code: int) -> str:
    """The reason text for a Modbus exception response, e.g. 'Modbus exception 2: illegal data address'."""
    return f"Modbus exception {code}: {EXCEPTION_NAMES.get(code, 'unknown exception code')}"


def registers_to_bytes(registers: Sequence[int], byte_order: str) -> bytes:
    """Reorder the bytes of ``registers`` (as received) into big-endian order ``ABCD...``."""
    if byte_order not in ("ABCD", "DCBA", "BADC", "CDAB"):
        raise DecodeError(f"unknown byte order {byte_order!r}")
    words = list(registers)
    if byte_order in ("CDAB", "DCBA"):
        words.reverse()
    swap = byte_order in ("BADC", "DCBA")
    out = bytearray()
    for word in words:
        if not 0 <= word <= 0xFFFF:
            raise DecodeError(f"register value {word} is not a 16-bit word")
        high, low = word >> 8, word & 0xFF
        out += bytes((low, high)) if swap else bytes((high, low))
    return bytes(out)


def decode_raw(registers: Sequence[int], data_type: str, byte_order: str = "ABCD") -> int | float:
    """The raw number stored in ``registers`` for a numeric ``data_type`` (int16 ... float64)."""
    fmt = _FORMATS.get(data_type)
    if fmt is None:
        raise DecodeError(f"unknown data type {data_type!r}")
    size = struct.calcsize(fmt)
    if len(registers) * 2 != size:
        raise DecodeError(f"a {data_type} needs {size // 2} register(s), got {len(registers)}")
    value: int | float = struct.unpack(fmt, registers_to_bytes(registers, byte_order))[0]
    return value


def apply_scale(raw: int | float, scale: float = 1.0, offset: float = 0.0) -> int | float:
    """``raw * scale + offset``; integers stay integers when the scaling is the identity."""
    if scale == 1.0 and offset == 0.0:
        return raw
    return raw * scale + offset


def decode_bit(registers: Sequence[int], bit: int, byte_order: str = "ABCD") -> bool:
    """Bit ``bit`` (0 = least significant) of one register, after the byte swap ``byte_order`` asks for."""
    if len(registers) != 1:
        raise DecodeError(f"a bit comes from 1 register, got {len(registers)}")
    if not 0 <= bit <= 15:
        raise DecodeError(f"bit {bit} is not within 0-15")
    word = int.from_bytes(registers_to_bytes(registers, byte_order), "big")
    return bool(word >> bit & 1)


def decode_string(registers: Sequence[int], byte_order: str = "ABCD") -> str:
    """Text stored two characters per register, cut at the first NUL, without trailing spaces."""
    ordered = list(registers)
    if byte_order in ("CDAB", "DCBA"):
        ordered.reverse()
    data = registers_to_bytes(ordered, "BADC" if byte_order in ("BADC", "DCBA") else "ABCD")
    data = data.split(b"\x00", 1)[0]
    try:
        return data.decode("utf-8").rstrip(" ")
    except UnicodeDecodeError as exc:
        raise DecodeError(f"the registers do not hold UTF-8 text ({data!r})") from exc


def decode_value(
    registers: Sequence[int],
    data_type: str,
    byte_order: str = "ABCD",
    *,
    scale: float = 1.0,
    offset: float = 0.0,
    bit: int | None = None,
) -> Value:
    """Decode and scale one tag's registers. Raises ``DecodeError`` for NaN, infinity or bad text.

    ``bool`` needs ``bit`` (a bit of one register); ``string`` takes all of ``registers``.
    """
    if data_type == "bool":
        if bit is None:
            raise DecodeError("a bool read from a register needs the bit number")
        return decode_bit(registers, bit, byte_order)
    if data_type == "string":
        return decode_string(registers, byte_order)
    value = apply_scale(decode_raw(registers, data_type, byte_order), scale, offset)
    if isinstance(value, float) and not math.isfinite(value):
        raise DecodeError(f"the device sent {value} (not a finite number) for this {data_type}")
    return value
