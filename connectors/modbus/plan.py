"""Request batching: join a machine's tags into as few Modbus reads as the protocol and device allow.

Pure functions; the connector runs the plan. Tags are grouped per unit id and table, sorted by
address and joined greedily while a request stays within its size limit (125 registers or 2000
bits by the protocol, less if the device says so) and the unused span between two neighbours is
at most ``max_gap`` registers (``16 * max_gap`` bits for coils and discrete inputs). For tags
sorted by address, greedy joining gives the fewest requests.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import TypeVar

from connectors.modbus.block import BlockDecoder, Outcome
from connectors.modbus.config import (
    BIT_TABLES,
    MAX_BITS_PER_REQUEST,
    MAX_REGISTERS_PER_REQUEST,
    ModbusMachine,
    ModbusTag,
)

FUNCTION_CODES: dict[str, int] = {"coil": 1, "discrete_input": 2, "holding": 3, "input": 4}
"""The only function codes the connector ever sends: reads. Nothing here can write."""

TABLE_ORDER: dict[str, int] = {"coil": 0, "discrete_input": 1, "holding": 2, "input": 3}

BITS_PER_REGISTER = 16

_T = TypeVar("_T")


@dataclass(frozen=True, slots=True)
class ReadRequest:
    """One Modbus read: ``count`` registers (or bits) of ``table`` from wire address ``start``."""

    table: str
    start: int
    count: int
    tags: tuple[ModbusTag, ...]
    unit_id: int = 1
    address_base: int = 0
    _decoder: BlockDecoder = field(init=False, repr=False, compare=False)
    names: tuple[str, ...] = field(init=False, repr=False, compare=False)
    """Each tag's name, in the order of ``tags``."""
    units: tuple[str | None, ...] = field(init=False, repr=False, compare=False)
    """Each tag's unit, in the order of ``tags``."""

    def __post_init__(self) -> None:  # frozen: the derived fields are set once, here
        decoder = BlockDecoder(self.tags, self.start + self.address_base, self.count, bits=self.table in BIT_TABLES)
        object.__setattr__(self, "_decoder", decoder)
        object.__setattr__(self, "names", tuple(tag.name for tag in self.tags))
        object.__setattr__(self, "units", tuple(tag.unit for tag in self.tags))

    def decode(self, data: Sequence[int] | Sequence[bool]) -> tuple[Sequence[Outcome], bool]:
        """One value (or ``DecodeError``) per tag of ``tags``, from this read's answer; True if all are values."""
        return self._decoder.decode(data)

    @property
    def function_code(self) -> int:
        """The Modbus function code of this read (1, 2, 3 or 4)."""
        return FUNCTION_CODES[self.table]

    @property
    def is_bits(self) -> bool:
        """True for coils and discrete inputs: the answer is bits, not registers."""
        return self.table in BIT_TABLES

    def slice_of(self, tag: ModbusTag, data: Sequence[_T]) -> Sequence[_T]:
        """The part of this request's answer (registers or bits) that holds ``tag``."""
        first = tag.address - self.address_base - self.start
        return data[first : first + tag.register_count]

    def describe(self) -> str:
        """E.g. 'holding registers 100-102 of unit 1' (wire addresses)."""
        kind = {"coil": "coils", "discrete_input": "discrete inputs"}.get(self.table, f"{self.table} registers")
        span = f"{self.start}" if self.count == 1 else f"{self.start}-{self.start + self.count - 1}"
        return f"{kind} {span} of unit {self.unit_id}"


@dataclass(frozen=True, slots=True)
class PlanOptions:
    """How a device wants to be asked: the machine config's batching keys."""

    unit_id: int = 1
    address_base: int = 0
    max_gap: int = 10
    max_registers: int = MAX_REGISTERS_PER_REQUEST
    max_bits: int = MAX_BITS_PER_REQUEST
    one_request_per_tag: bool = False

    @classmethod
    def of(cls, machine: ModbusMachine) -> PlanOptions:
        """The options a machine's config asks for."""
        return cls(
            unit_id=machine.unit_id,
            address_base=machine.address_base,
            max_gap=machine.max_gap,
            max_registers=machine.max_registers_per_request,
            max_bits=machine.max_bits_per_request,
            one_request_per_tag=machine.one_request_per_tag,
        )


def plan_requests(
    tags: Iterable[ModbusTag],
    options: PlanOptions | None = None,
    *,
    max_registers: int | None = None,
    max_gap: int | None = None,
) -> list[ReadRequest]:
    """The fewest reads covering every tag within the limits of ``options``.

    ``max_registers`` and ``max_gap`` override the options (handy in tests). Requests come out
    ordered by unit, table, then address, so a poll walks the map the same way each time.
    With ``one_request_per_tag`` each distinct tag position gets its own read (tags at the same
    address with the same type share it).
    """
    opts = options or PlanOptions()
    limit_registers = opts.max_registers if max_registers is None else max_registers
    gap = opts.max_gap if max_gap is None else max_gap
    if opts.one_request_per_tag:
        gap = -1
    if limit_registers < 1 or opts.max_bits < 1:
        raise ValueError("max_registers and max_bits must be at least 1")

    def unit_of(tag: ModbusTag) -> int:
        return opts.unit_id if tag.unit_id is None else tag.unit_id

    ordered = sorted(tags, key=lambda t: (unit_of(t), TABLE_ORDER[t.table], t.address, -t.register_count))
    requests: list[ReadRequest] = []
    group: list[ModbusTag] = []
    start = end = 0

    def flush() -> None:
        first = group[0]
        requests.append(
            ReadRequest(
                first.table, start - opts.address_base, end - start, tuple(group), unit_of(first), opts.address_base
            )
        )

    for tag in ordered:
        if group:
            first = group[0]
            bits = tag.is_bit_table
            limit = opts.max_bits if bits else limit_registers
            allowed_gap = gap * BITS_PER_REGISTER if bits and gap > 0 else gap
            joined_end = max(end, tag.end)
            fits = (
                (unit_of(tag), tag.table) == (unit_of(first), first.table)
                and tag.address - end <= allowed_gap
                and joined_end - start <= limit
            )
            if fits:
                group.append(tag)
                end = joined_end
                continue
            flush()
        group, start, end = [tag], tag.address, tag.end
    if group:
        flush()
    return requests


def split_request(request: ReadRequest, options: PlanOptions | None = None) -> list[ReadRequest]:
    """One request per distinct tag position of ``request`` (used when a device rejects a joined read)."""
    opts = options or PlanOptions()
    single = PlanOptions(
        unit_id=request.unit_id,
        address_base=request.address_base,
        max_gap=0,
        max_registers=opts.max_registers,
        max_bits=opts.max_bits,
        one_request_per_tag=True,
    )
    return plan_requests(request.tags, single)
