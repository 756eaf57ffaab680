"""Request batching: join a machine's tags into as few Modbus reads as the protocol allows.

Pure functions; the connector runs the plan. Tags are grouped per table, sorted by address and
joined greedily while the request stays within ``max_registers`` and the unused registers between
two neighbours are at most ``max_gap``.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from connectors.modbus.config import MAX_REGISTERS_PER_REQUEST, ModbusTag

FUNCTION_CODES: dict[str, int] = {"holding": 3, "input": 4}
"""The only function codes the connector ever sends: reads. Nothing here can write."""


@dataclass(frozen=True, slots=True)
class ReadRequest:
    """One Modbus read: ``count`` registers of ``table`` from ``start``, feeding ``tags``."""

    table: str
    start: int
    count: int
    tags: tuple[ModbusTag, ...]

    @property
    def function_code(self) -> int:
        """The Modbus function code of this read (3 or 4)."""
        return FUNCTION_CODES[self.table]

    def registers_of(self, tag: ModbusTag, registers: Sequence[int]) -> Sequence[int]:
        """The slice of this request's answer that holds ``tag``."""
        first = tag.address - self.start
        return registers[first : first + tag.register_count]


def plan_requests(
    tags: Iterable[ModbusTag],
    *,
    max_registers: int = MAX_REGISTERS_PER_REQUEST,
    max_gap: int = 10,
) -> list[ReadRequest]:
    """The fewest reads covering every tag, each within ``max_registers`` and ``max_gap``.

    Requests come out ordered by table, then address, so a poll walks the map the same way each time.
    """
    if max_registers < 1:
        raise ValueError("max_registers must be at least 1")
    ordered = sorted(tags, key=lambda t: (t.table, t.address, -t.register_count))
    requests: list[ReadRequest] = []
    group: list[ModbusTag] = []
    start = end = 0
    for tag in ordered:
        if group:
            joined_end = max(end, tag.end)
            fits = tag.table == group[0].table and tag.address - end <= max_gap and joined_end - start <= max_registers
            if fits:
                group.append(tag)
                end = joined_end
                continue
            requests.append(ReadRequest(group[0].table, start, end - start, tuple(group)))
        group, start, end = [tag], tag.address, tag.end
    if group:
        requests.append(ReadRequest(group[0].table, start, end - start, tuple(group)))
    return requests


def split_request(request: ReadRequest) -> list[ReadRequest]:
    """One request per distinct tag position of ``request`` (used when a device rejects a joined read)."""
    return plan_requests(request.tags, max_registers=MAX_REGISTERS_PER_REQUEST, max_gap=-1)
