"""Decode every tag of one read in one pass, with the layout worked out once per request.

A poll sends the same reads every cycle, so where each tag sits in an answer and which ``struct``
format turns its bytes into a number is known in advance. Numbers whose bytes arrive in one of
the two plain orders, ABCD (big-endian, Modbus's own) and DCBA (little-endian), are unpacked
together: one ``struct.Struct`` per order spans the whole answer, with pad bytes over what lies
between the tags. Everything else (CDAB, BADC, bits of a register, strings, tags that overlap
another tag of the same order) goes through ``decode.decode_value`` one by one. Both paths give
the same values and the same bad-quality reasons (tests/connectors/test_modbus_block.py).

Why: decoding was most of the connector's time per request; a 125-register read of 62 float32
values now costs about as much as pymodbus's own parsing of the answer.
"""

from __future__ import annotations

import struct
from collections.abc import Sequence
from math import isfinite

from connectors.modbus.config import ModbusTag
from connectors.modbus.decode import decode_value
from edge_agent.core.errors import DecodeError
from edge_agent.core.samples import Value

Outcome = Value | DecodeError
"""A tag's decoded value, or why it has none (the sample's bad-quality reason)."""

_CODES: dict[str, str] = {
    "int16": "h",
    "uint16": "H",
    "int32": "i",
    "uint32": "I",
    "float32": "f",
    "int64": "q",
    "uint64": "Q",
    "float64": "d",
}
_PREFIX: dict[str, str] = {"ABCD": ">", "DCBA": "<"}


class _Unpacked:
    """The tags one ``Struct`` unpacks, in its field order, with how to finish each value."""

    __slots__ = ("finish", "layout")

    def __init__(self, layout: struct.Struct, finish: list[tuple[int, float, float, bool, str]]) -> None:
        self.layout = layout
        self.finish = finish  # (tag position, scale, offset, is a float, data type)


class BlockDecoder:
    """Turns the registers (or bits) of one read's answer into one outcome per tag.

    ``first`` is the address of the answer's first register in the tags' addressing (the
    request's wire start plus the machine's ``address_base``).
    """

    __slots__ = ("_bits", "_count", "_offsets", "_plain", "_slow", "_tags", "_unpacked")

    def __init__(self, tags: Sequence[ModbusTag], first: int, count: int, *, bits: bool) -> None:
        self._tags = tuple(tags)
        self._count = count
        self._bits = bits
        self._offsets = tuple(tag.address - first for tag in self._tags)
        self._unpacked: list[_Unpacked] = []
        self._slow: list[int] = []
        if bits:
            return
        groups: dict[str, list[int]] = {prefix: [] for prefix in _PREFIX.values()}
        for position, tag in enumerate(self._tags):
            prefix = _PREFIX.get(tag.byte_order)
            if prefix is None or tag.type not in _CODES:
                self._slow.append(position)
            else:
                groups[prefix].append(position)
        for prefix, positions in groups.items():
            if positions:
                self._compile(prefix, positions)
        self._plain = self._plain_layout()

    def _plain_layout(self) -> struct.Struct | None:
        """The one ``Struct`` that yields every value as it is, in tag order, if this read has one.

        The common case (a block of numbers in one byte order, unscaled, sorted by address) then
        needs no per-tag work in Python at all.
        """
        if self._slow or len(self._unpacked) != 1:
            return None
        finish = self._unpacked[0].finish
        in_order = [position for position, *_ in finish] == list(range(len(self._tags)))
        unscaled = all(scale == 1.0 and offset == 0.0 for _, scale, offset, *_ in finish)
        return self._unpacked[0].layout if in_order and unscaled else None

    def _compile(self, prefix: str, positions: list[int]) -> None:
        fmt = [prefix]
        finish: list[tuple[int, float, float, bool, str]] = []
        at = 0  # bytes covered so far
        for position in sorted(positions, key=lambda p: self._offsets[p]):
            tag, start = self._tags[position], 2 * self._offsets[position]
            if start < at:  # overlaps the previous tag of this order: decode it alone
                self._slow.append(position)
                continue
            if start > at:
                fmt.append(f"{start - at}x")
            fmt.append(_CODES[tag.type])
            at = start + 2 * tag.register_count
            finish.append((position, tag.scale, tag.offset, tag.type.startswith("float"), tag.type))
        if finish:
            self._unpacked.append(_Unpacked(struct.Struct("".join(fmt)), finish))

    def decode(self, data: Sequence[int] | Sequence[bool]) -> tuple[Sequence[Outcome], bool]:
        """One outcome per tag, in the order of the tags given at construction, and whether all are values.

        With the second item True no outcome is a ``DecodeError``, so the caller need not look.
        """
        if self._bits:
            return [bool(data[offset]) for offset in self._offsets], True
        if len(data) < self._count:
            raise ValueError(f"the answer holds {len(data)} registers, the read asked for {self._count}")
        if self._plain is not None:
            try:
                values = self._plain.unpack_from(struct.pack(f">{self._count}H", *data[: self._count]))
            except struct.error:
                pass  # a value that is not a 16-bit word: the general path below says which
            else:
                if all(map(isfinite, values)):
                    return values, True
        outcomes = self._outcomes(data)
        return outcomes, not any(isinstance(outcome, DecodeError) for outcome in outcomes)

    def _outcomes(self, data: Sequence[int] | Sequence[bool]) -> list[Outcome]:
        outcomes: list[Outcome] = [DecodeError("not decoded")] * len(self._tags)
        slow = self._slow
        if self._unpacked:
            try:
                raw = struct.pack(f">{self._count}H", *data[: self._count])
            except struct.error:  # a value that is not a 16-bit word: let decode_value say which
                slow = list(range(len(self._tags)))
            else:
                for unpacked in self._unpacked:
                    values = unpacked.layout.unpack_from(raw)
                    for value, (position, scale, offset, is_float, data_type) in zip(
                        values, unpacked.finish, strict=True
                    ):
                        number = value if scale == 1.0 and offset == 0.0 else value * scale + offset
                        if (is_float or isinstance(number, float)) and not isfinite(number):
                            outcomes[position] = _not_finite(number, data_type)
                        else:
                            outcomes[position] = number
        for position in slow:
            outcomes[position] = self._decode_one(position, data)
        return outcomes

    def _decode_one(self, position: int, data: Sequence[int] | Sequence[bool]) -> Outcome:
        tag, first = self._tags[position], self._offsets[position]
        words = [int(word) for word in data[first : first + tag.register_count]]
        try:
            return decode_value(words, tag.type, tag.byte_order, scale=tag.scale, offset=tag.offset, bit=tag.bit)
        except DecodeError as exc:
            return exc


def _not_finite(value: float, data_type: str) -> DecodeError:
    """The reason ``decode_value`` gives for NaN and infinity."""
    return DecodeError(f"the device sent {value} (not a finite number) for this {data_type}")
