"""Pure decoding of Modbus registers: every type in every byte order, scaling, bad values."""

from __future__ import annotations

import math
import struct

import pytest

from connectors.modbus.decode import (
    apply_scale,
    decode_bit,
    decode_raw,
    decode_string,
    decode_value,
    exception_reason,
    registers_to_bytes,
)
from edge_agent.core.errors import DecodeError

BYTE_ORDERS = ("ABCD", "DCBA", "BADC", "CDAB")
FORMATS = {
    "int16": ">h",
    "uint16": ">H",
    "int32": ">i",
    "uint32": ">I",
    "float32": ">f",
    "int64": ">q",
    "uint64": ">Q",
    "float64": ">d",
}
VALUES: dict[str, list[int | float]] = {
    "int16": [0, 1, -1, 12345, -12345, 32767, -32768],
    "uint16": [0, 1, 0x1234, 65535],
    "int32": [0, 1, -1, 123456789, -123456789, 2**31 - 1, -(2**31)],
    "uint32": [0, 1, 0x12345678, 2**32 - 1],
    "float32": [0.0, 1.5, -1.5, 23.456, -273.15, 3.4e38, 1e-40],
    "int64": [0, 1, -1, 2**63 - 1, -(2**63), -1234567890123],
    "uint64": [0, 1, 2**64 - 1, 0x0102030405060708],
    "float64": [0.0, -0.1, 23.456, 1e300, -5e-324],
}

LETTERS_64 = {"ABCD": "ABCDEFGH", "CDAB": "GHEFCDAB", "BADC": "BADCFEHG", "DCBA": "HGFEDCBA"}


def to_wire(value: float, data_type: str, byte_order: str) -> list[int]:
    """Encode like a device would: big-endian bytes A B C D, sent in the order the name spells."""
    big = struct.pack(FORMATS[data_type], value)
    if len(big) == 8:
        order = LETTERS_64[byte_order]  # the usual names for 64-bit orders, e.g. Telegraf's
    elif len(big) == 4:
        order = byte_order
    else:
        order = {"ABCD": "AB", "CDAB": "AB", "BADC": "BA", "DCBA": "BA"}[byte_order]
    wire = bytes(big[ord(letter) - ord("A")] for letter in order)
    return [int.from_bytes(wire[i : i + 2], "big") for i in range(0, len(wire), 2)]


def float32(value: float) -> float:
    result: float = struct.unpack(">f", struct.pack(">f", value))[0]
    return result


@pytest.mark.parametrize("byte_order", BYTE_ORDERS)
@pytest.mark.parametrize("data_type", list(FORMATS))
def test_every_type_in_every_byte_order(data_type: str, byte_order: str) -> None:
    for value in VALUES[data_type]:
        registers = to_wire(value, data_type, byte_order)
        decoded = decode_value(registers, data_type, byte_order)
        if data_type == "float32":
            assert isinstance(decoded, float)
            assert decoded == float32(value)
        elif data_type == "float64":
            assert decoded == value
        else:
            assert decoded == value
            assert type(decoded) is int


def test_known_wire_images() -> None:
    # 0x12345678 as a device would send it in each byte order.
    assert decode_raw([0x1234, 0x5678], "uint32", "ABCD") == 0x12345678
    assert decode_raw([0x5678, 0x1234], "uint32", "CDAB") == 0x12345678
    assert decode_raw([0x3412, 0x7856], "uint32", "BADC") == 0x12345678
    assert decode_raw([0x7856, 0x3412], "uint32", "DCBA") == 0x12345678
    # 25.0 is 0x41C80000 in IEEE 754.
    assert decode_raw([0x41C8, 0x0000], "float32", "ABCD") == 25.0
    assert decode_raw([0x0000, 0x41C8], "float32", "CDAB") == 25.0
    # 16-bit values: only the byte swap matters.
    assert decode_raw([0xFFFE], "int16", "ABCD") == -2
    assert decode_raw([0xFEFF], "int16", "BADC") == -2
    assert decode_raw([0xFEFF], "int16", "DCBA") == -2
    assert decode_raw([0xFFFE], "int16", "CDAB") == -2


def test_registers_to_bytes() -> None:
    assert registers_to_bytes([0x0102, 0x0304], "ABCD") == b"\x01\x02\x03\x04"
    assert registers_to_bytes([0x0102, 0x0304], "CDAB") == b"\x03\x04\x01\x02"
    assert registers_to_bytes([0x0102, 0x0304], "BADC") == b"\x02\x01\x04\x03"
    assert registers_to_bytes([0x0102, 0x0304], "DCBA") == b"\x04\x03\x02\x01"


def test_scale_and_offset() -> None:
    assert decode_value([235], "int16", scale=0.1) == pytest.approx(23.5)
    assert decode_value([0xFF15], "int16", scale=0.1) == pytest.approx(-23.5)  # -235
    assert decode_value([1000], "uint16", scale=0.01, offset=-5.0) == pytest.approx(5.0)
    assert decode_value([0xFFFF, 0xFFFF], "int32", scale=2.0) == -2.0
    assert decode_value([0x41C8, 0], "float32", scale=2.0, offset=1.0) == 51.0


def test_identity_scaling_keeps_the_raw_type() -> None:
    assert apply_scale(7) == 7
    assert type(apply_scale(7)) is int
    assert type(apply_scale(7, scale=1.0, offset=0.0)) is int
    assert type(apply_scale(7, scale=2.0)) is float
    assert apply_scale(7, offset=0.5) == 7.5


def test_float32_is_exact_not_rounded() -> None:
    registers = to_wire(23.456, "float32", "ABCD")
    value = decode_value(registers, "float32")
    assert value == float32(23.456)
    assert value != 23.456  # the float32 nearest to 23.456, carried as a Python float without rounding


@pytest.mark.parametrize(
    ("registers", "data_type"),
    [
        ([0x7FC0, 0x0000], "float32"),
        ([0x7F80, 0x0000], "float32"),
        ([0xFF80, 0x0000], "float32"),
        ([0x7FF8, 0, 0, 0], "float64"),
    ],
)
def test_nan_and_infinity_are_rejected(registers: list[int], data_type: str) -> None:
    assert not math.isfinite(decode_raw(registers, data_type))
    with pytest.raises(DecodeError, match="not a finite number"):
        decode_value(registers, data_type)


def test_wrong_register_count_and_type() -> None:
    with pytest.raises(DecodeError, match="needs 2 register"):
        decode_value([1], "float32")
    with pytest.raises(DecodeError, match="unknown data type"):
        decode_value([1], "int12")
    with pytest.raises(DecodeError, match="16-bit"):
        decode_value([70000], "uint16")
    with pytest.raises(DecodeError, match="byte order"):
        decode_value([1], "uint16", "ABDC")
    with pytest.raises(DecodeError, match="needs the bit"):
        decode_value([1], "bool")


@pytest.mark.parametrize(
    ("byte_order", "bit", "expected"),
    [
        ("ABCD", 0, True),
        ("ABCD", 1, False),
        ("ABCD", 2, True),
        ("ABCD", 15, True),
        ("ABCD", 8, False),
        ("BADC", 0, False),  # bytes swapped: the low byte is 0x80
        ("BADC", 7, True),
        ("BADC", 8, True),
        ("BADC", 10, True),
    ],
)
def test_bit_of_a_register(byte_order: str, bit: int, expected: bool) -> None:
    value = decode_value([0b1000_0000_0000_0101], "bool", byte_order, bit=bit)
    assert value is expected


def test_bit_out_of_range() -> None:
    with pytest.raises(DecodeError, match="0-15"):
        decode_bit([1], 16)
    with pytest.raises(DecodeError, match="1 register"):
        decode_bit([1, 2], 0)


def test_strings() -> None:
    hello = [0x4845, 0x4C4C, 0x4F00, 0x0000]  # "HELLO" then NUL padding
    assert decode_value(hello, "string") == "HELLO"
    assert decode_string([0x4548, 0x4C4C, 0x004F], "BADC") == "HELLO"
    assert decode_string([0x4F00, 0x4C4C, 0x4845], "CDAB") == "HELLO"
    assert decode_string([0x4142, 0x2020], "ABCD") == "AB"  # space padding is trimmed
    assert decode_string([0x0000, 0x4142], "ABCD") == ""  # text ends at the first NUL
    assert decode_string([0xC3A9, 0x0000]) == "é"
    with pytest.raises(DecodeError, match="UTF-8"):
        decode_string([0xFFFE])


def test_exception_reasons() -> None:
    assert exception_reason(2) == "Modbus exception 2: illegal data address"
    assert exception_reason(6) == "Modbus exception 6: server device busy"
    assert exception_reason(99) == "Modbus exception 99: unknown exception code"
