"""A small real Modbus TCP device for tests: fixed tables, every request recorded, faults on demand.

The simulator serves the plant's register map; this device serves whatever image a test needs
(64-bit values, strings, bits, holes) and records each request's unit id, function code, address
and count, so tests can prove how many requests a poll sends and that none of them writes.
"""

from __future__ import annotations

import asyncio
import functools
from dataclasses import dataclass, field
from types import TracebackType
from typing import Any, Self

from pymodbus import FramerType
from pymodbus.constants import ExcCodes
from pymodbus.server import ModbusTcpServer
from pymodbus.simulator import DataType, SimData, SimDevice


@dataclass
class UnitImage:
    """The four tables of one unit, each starting at address 0."""

    coils: list[bool] = field(default_factory=lambda: [False])
    discrete_inputs: list[bool] = field(default_factory=lambda: [False])
    holding: list[int] = field(default_factory=lambda: [0])
    input: list[int] = field(default_factory=lambda: [0])


@dataclass(frozen=True)
class Seen:
    """One request as the device received it."""

    unit: int
    function_code: int
    address: int
    count: int


class ModbusTestDevice:
    """``async with ModbusTestDevice({1: UnitImage(...)}) as device: device.port``."""

    def __init__(self, units: dict[int, UnitImage], port: int = 0, framer: FramerType = FramerType.SOCKET) -> None:
        self.units = units
        self._framer = framer
        self._requested_port = port
        self.seen: list[Seen] = []
        self.connections_opened = 0
        self.connections_closed = 0
        self.latency_s = 0.0
        self.slow_addresses: set[int] = set()
        """Requests starting at these addresses get ``latency_s``; empty means every request does."""
        self.exception: int | None = None
        self.max_count = 0
        """Reads of more than this many registers or bits get exception 3 (0: no limit)."""
        self._server: ModbusTcpServer | None = None
        self.port = 0

    async def __aenter__(self) -> Self:
        devices = [self._device(unit, image) for unit, image in self.units.items()]
        server = ModbusTcpServer(
            devices,
            address=("127.0.0.1", self._requested_port),
            framer=self._framer,
            trace_pdu=self._trace_pdu,
            trace_connect=self._trace_connect,
        )
        await server.serve_forever(background=True)
        self._server = server
        sockets = getattr(server.transport, "sockets", None) or ()
        self.port = int(next(iter(sockets)).getsockname()[1])
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        server, self._server = self._server, None
        if server is not None:
            await server.shutdown()  # type: ignore[no-untyped-call]
            await asyncio.sleep(0)

    @property
    def function_codes(self) -> set[int]:
        """Every function code a client sent."""
        return {s.function_code for s in self.seen}

    def _device(self, unit: int, image: UnitImage) -> SimDevice:
        def bits(values: list[bool]) -> list[SimData]:
            return [SimData(0, values=list(values), datatype=DataType.BITS, readonly=True)]

        def registers(values: list[int]) -> list[SimData]:
            return [SimData(0, values=list(values), datatype=DataType.REGISTERS, readonly=True)]

        return SimDevice(
            unit,
            simdata=(bits(image.coils), bits(image.discrete_inputs), registers(image.holding), registers(image.input)),
            action=functools.partial(self._action, unit),
        )

    def _trace_pdu(self, sending: bool, pdu: Any) -> Any:
        if not sending:
            self.seen.append(
                Seen(pdu.dev_id, pdu.function_code, getattr(pdu, "address", -1), getattr(pdu, "count", -1))
            )
        return pdu

    def _trace_connect(self, connected: bool) -> None:
        if connected:
            self.connections_opened += 1
        else:
            self.connections_closed += 1

    async def _action(
        self,
        _unit: int,
        _function_code: int,
        _start_address: int,
        address: int,
        count: int,
        _registers: list[int],
        set_values: list[int] | list[bool] | None,
    ) -> ExcCodes | None:
        if self.latency_s > 0 and (not self.slow_addresses or address in self.slow_addresses):
            await asyncio.sleep(self.latency_s)
        if self.exception is not None:
            return ExcCodes(self.exception)
        if self.max_count and count > self.max_count:
            return ExcCodes.ILLEGAL_VALUE
        if set_values is not None:
            return ExcCodes.ILLEGAL_ADDRESS
        return None
