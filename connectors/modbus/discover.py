"""``edge-agent discover modbus://host[:port]``: show a register range in every type and byte order.

A Modbus device does not describe itself, so the operator learns its map by looking: each
address as hex, int16 and uint16, and as float32 with the next address in the four byte
orders, next to the manual. Read-only: function codes 3 and 4 (holding / input registers), over
the connector's own Modbus TCP link (``tcp_link.py``), which cannot send anything else.
"""

from __future__ import annotations

import argparse
import asyncio
import math
import re
import struct
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

from pymodbus.exceptions import ModbusException

from connectors.discovery import DiscoverError, DiscoverRequest, Discovery, Progress
from connectors.modbus.decode import decode_raw, exception_reason
from connectors.modbus.tcp_link import ModbusTcpLink

BYTE_ORDERS = ("ABCD", "CDAB", "BADC", "DCBA")
MAX_REGISTERS = 125
LAST_ADDRESS = 65535
DEFAULT_PORT = 502


def parse_range(text: str) -> tuple[int, int]:
    """``"0-199"`` → ``(0, 199)``; ``"7"`` → ``(7, 7)``; ``DiscoverError`` with the fix otherwise."""
    match = re.fullmatch(r"\s*(\d+)\s*(?:-\s*(\d+)\s*)?", text)
    if match is None:
        raise DiscoverError(f"--range {text!r} is not a range of addresses. Fix: write it as FIRST-LAST, e.g. 0-199")
    first = int(match.group(1))
    last = int(match.group(2)) if match.group(2) is not None else first
    if first > LAST_ADDRESS or last > LAST_ADDRESS:
        raise DiscoverError(
            f"--range {text} goes past {LAST_ADDRESS}, the last Modbus address. Fix: use addresses 0-{LAST_ADDRESS} "
            "(register 40001 of a manual is holding address 0)"
        )
    if last < first:
        raise DiscoverError(f"--range {text} is reversed. Fix: write the lower address first, e.g. {last}-{first}")
    return first, last


def shortest_float32(value: float) -> str:
    """The shortest text that reads back as the same float32 (e.g. ``12.3456``, not ``12.345600128``)."""
    if math.isnan(value) or math.isinf(value):
        return str(value)
    packed = struct.pack(">f", value)
    for precision in range(1, 10):
        text = f"{value:.{precision}g}"
        if struct.pack(">f", float(text)) == packed:
            return text
    return repr(value)


@dataclass
class RegisterRead:
    """What a register range read gave: the value of each address, or why it could not be read."""

    values: dict[int, int]
    failed: dict[int, str]


ReadFunc = Callable[[int, int], Awaitable[list[int] | int | str]]
"""``await read(start, count)`` → the registers, an ``int`` Modbus exception code, or why there was no answer."""


async def read_range(
    read: ReadFunc, first: int, last: int, on_progress: Callable[[int], None] | None = None
) -> RegisterRead:
    """Read ``first``..``last`` in requests of at most 125 registers.

    A request answered with exception 2 or 3 (illegal address / value) is split in halves until the
    addresses that fail are found one by one; any other exception marks the whole request.
    """
    out = RegisterRead({}, {})

    async def chunk(start: int, count: int) -> None:
        answer = await read(start, count)
        if isinstance(answer, int):
            if answer in (2, 3) and count > 1:
                half = count // 2
                await chunk(start, half)
                await chunk(start + half, count - half)
                return
            for address in range(start, start + count):
                out.failed[address] = exception_reason(answer)
        elif isinstance(answer, str):
            for address in range(start, start + count):
                out.failed[address] = answer
        else:
            for offset, word in enumerate(answer[:count]):
                out.values[start + offset] = int(word)
            for address in range(start + len(answer), start + count):
                out.failed[address] = f"the device answered {len(answer)} of {count} registers"
        if on_progress is not None:
            on_progress(len(out.values) + len(out.failed))

    for start in range(first, last + 1, MAX_REGISTERS):
        await chunk(start, min(MAX_REGISTERS, last + 1 - start))
    return out


def register_rows(registers: RegisterRead, first: int, last: int) -> list[list[str]]:
    """One row per address: hex, int16, uint16 and float32 (this address and the next) per byte order."""
    rows = []
    for address in range(first, last + 1):
        if address in registers.failed:
            rows.append([str(address), "-", "-", "-", *(["-"] * 4), registers.failed[address]])
            continue
        word = registers.values.get(address)
        if word is None:
            continue
        row = [str(address), f"0x{word:04X}", str(decode_raw([word], "int16")), str(word)]
        following = registers.values.get(address + 1)
        for order in BYTE_ORDERS:
            if following is None:
                row.append("-")
            else:
                row.append(shortest_float32(float(decode_raw([word, following], "float32", order))))
        row.append("")
        rows.append(row)
    return rows


async def dump_registers(
    host: str, port: int, *, unit: int, table: str, first: int, last: int, limit: float, progress: Progress
) -> RegisterRead:
    """Read registers ``first``..``last`` (and one more, for the float pairs) with FC 3 or FC 4 only."""
    link = ModbusTcpLink(host, port, limit)
    progress.status(f"connecting to {host}:{port} ...")
    if not await link.connect():
        progress.clear()
        raise DiscoverError(
            f"cannot connect to {host}:{port} (refused, no route or no answer within {limit:g} s). "
            "Fix: check host and port (502 by default) and close other clients: many devices take only one or two",
            code=1,
        )
    function = link.read_holding_registers if table == "holding" else link.read_input_registers

    async def read(start: int, count: int) -> list[int] | int | str:
        try:
            async with asyncio.timeout(limit):
                answer = await function(start, count=count, device_id=unit)
        except (TimeoutError, ModbusException) as exc:
            if not link.connected:
                raise DiscoverError(f"the connection to {host}:{port} was lost: {exc}", code=1) from None
            reason = "no answer" if isinstance(exc, TimeoutError) else f"request failed: {exc}"
            return f"{reason} within {limit:g} s (check --unit)"
        if answer.isError():
            return answer.exception_code
        return answer.registers

    # One register past the range, so the float32 pair of the last address can be shown too.
    upto = min(last + 1, LAST_ADDRESS)
    progress.clear()
    bar = progress.bar(upto - first + 1, f"reading {host}:{port} unit {unit}", "reg")
    try:
        return await read_range(read, first, upto, bar.advance_to)
    finally:
        bar.close()
        link.close()


class ModbusDiscoverer:
    """The Modbus part of ``edge-agent discover`` (``connectors.discovery.Discoverer``)."""

    schemes: tuple[str, ...] = ("modbus", "modbus+tcp")
    url_form = "modbus://host[:port]"
    example_url = "modbus://192.168.0.20:502"
    summary = "dump Modbus registers"
    description = "show a Modbus register range in every type and byte order"
    examples: tuple[str, ...] = ("edge-agent discover modbus://192.168.0.20:502 --unit 1 --range 0-199 --table input",)
    read_only = "Modbus function codes 3 and 4"
    group = "Modbus"
    options: tuple[str, ...] = ("range", "unit", "table")
    loggers: tuple[str, ...] = ("pymodbus",)

    def add_arguments(self, group: argparse._ArgumentGroup) -> None:
        """``--unit``, ``--range``, ``--table``."""
        group.add_argument("--unit", type=int, help="unit id (slave id) to read (default 1)")
        group.add_argument("--range", metavar="FIRST-LAST", help="register addresses, zero-based (default 0-99)")
        group.add_argument("--table", choices=("holding", "input"), help="holding (FC 3, default) or input (FC 4)")

    async def discover(self, request: DiscoverRequest, progress: Progress) -> Discovery:
        """Read the range and show every address in every type and byte order."""
        options = request.options
        first, last = parse_range(options.get("range") or "0-99")
        unit = 1 if options.get("unit") is None else int(options["unit"])
        if not 0 <= unit <= 255:
            raise DiscoverError(
                f"--unit {unit} is not a Modbus unit id. Fix: use 0-255 (plain TCP devices mostly use 1)"
            )
        table = options.get("table") or "holding"
        host, port = request.host, request.port or DEFAULT_PORT
        registers = await dump_registers(
            host, port, unit=unit, table=table, first=first, last=last, limit=request.timeout, progress=progress
        )
        function = 3 if table == "holding" else 4
        bad = sum(1 for address in range(first, last + 1) if address in registers.failed)
        return Discovery(
            heading=[
                f"{table} registers {first}-{last} of unit {unit} at {host}:{port} (function code {function})",
                "float32 columns: this register and the next, in each byte order",
                "",
            ],
            columns=["addr", "hex", "int16", "uint16", *(f"f32 {order}" for order in BYTE_ORDERS), "error"],
            rows=register_rows(registers, first, last),
            summary=f"{last - first + 1 - bad} register(s) read, {bad} failed",
        )
