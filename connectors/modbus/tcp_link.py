"""A lean Modbus TCP client for the connector's four reads: one request in flight, answers matched by transaction id.

Why not pymodbus here: its client spends as much CPU per request in Python (PDU objects, framers,
logging hooks, a ``wait_for`` per request) as the connector spends decoding the answer (figures in
connectors/modbus/README.md, Performance). This link builds the request frame with one
``struct.pack`` and parses the answer with one ``struct.unpack``, so a poll reads at least as fast
as a raw pymodbus loop. RTU over TCP and serial lines still use pymodbus.

It speaks the subset the connector needs and nothing else: function codes 1 to 4 (it cannot
write), the MBAP header, exception answers. An answer whose transaction id is not the one
awaited (a late answer to a request that timed out) is dropped. A frame that cannot be Modbus
TCP closes the connection. The interface mirrors pymodbus's client (``connect``, ``connected``,
``close``, ``read_*``; answers with ``isError``, ``exception_code``, ``registers``, ``bits``), so
the connector treats both alike; timeouts are the caller's (``asyncio.timeout``).
"""

from __future__ import annotations

import asyncio
import logging
import struct

from pymodbus.exceptions import ConnectionException, ModbusIOException

_log = logging.getLogger(__name__)

_REQUEST = struct.Struct(">HHHBBHH")
"""MBAP header (transaction id, protocol 0, length 6, unit) and the PDU: function code, start, count."""
_HEADER = struct.Struct(">HHH")
MAX_LENGTH = 254
"""The MBAP length field's largest sensible value: unit id plus a 253-byte PDU."""


class Answer:
    """A read's answer: registers or bits, or the exception code of a Modbus exception."""

    __slots__ = ("bits", "exception_code", "registers")

    def __init__(
        self, registers: list[int] | None = None, bits: list[bool] | None = None, exception_code: int = 0
    ) -> None:
        self.registers: list[int] = registers if registers is not None else []
        self.bits: list[bool] = bits if bits is not None else []
        self.exception_code = exception_code

    def isError(self) -> bool:  # noqa: N802 - pymodbus's name, so the connector reads both kinds of answer alike
        """True for a Modbus exception answer."""
        return self.exception_code != 0


class ModbusTcpLink(asyncio.Protocol):
    """One connection to one Modbus TCP device or gateway: ``await connect()``, then reads."""

    def __init__(self, host: str, port: int, timeout: float) -> None:
        self._host, self._port, self._timeout = host, port, timeout
        self._transport: asyncio.Transport | None = None
        self._buffer = bytearray()
        self._tid = 0
        self._waiting: tuple[int, int, int, asyncio.Future[Answer]] | None = None  # tid, unit, function code
        self._lock = asyncio.Lock()

    # -- connection --------------------------------------------------------------------------

    async def connect(self) -> bool:
        """Open the TCP connection within ``timeout``; False when refused, unreachable or too slow."""
        loop = asyncio.get_running_loop()
        try:
            async with asyncio.timeout(self._timeout):
                await loop.create_connection(lambda: self, self._host, self._port)
        except (OSError, TimeoutError) as exc:
            _log.debug("Modbus TCP %s:%d: connect failed: %s", self._host, self._port, exc)
            return False
        return self._transport is not None

    @property
    def connected(self) -> bool:
        """Whether the connection is open."""
        return self._transport is not None

    def close(self) -> None:
        """Close the connection; a read in flight fails with ``ConnectionException``. Idempotent."""
        transport, self._transport = self._transport, None
        if transport is not None:
            transport.close()
        self._fail(ConnectionException("connection closed"))

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        """The connection is open (asyncio calls this)."""
        assert isinstance(transport, asyncio.Transport)
        self._transport = transport
        self._buffer.clear()

    def connection_lost(self, exc: Exception | None) -> None:
        """The peer closed the connection or it broke (asyncio calls this)."""
        self._transport = None
        self._fail(ConnectionException(f"connection lost: {exc or 'closed by the device'}"))

    def _fail(self, exc: Exception) -> None:
        waiting, self._waiting = self._waiting, None
        if waiting is not None and not waiting[3].done():
            waiting[3].set_exception(exc)

    # -- reads -------------------------------------------------------------------------------

    async def read_coils(self, address: int, *, count: int, device_id: int) -> Answer:
        """Function code 1."""
        return await self._read(1, address, count, device_id)

    async def read_discrete_inputs(self, address: int, *, count: int, device_id: int) -> Answer:
        """Function code 2."""
        return await self._read(2, address, count, device_id)

    async def read_holding_registers(self, address: int, *, count: int, device_id: int) -> Answer:
        """Function code 3."""
        return await self._read(3, address, count, device_id)

    async def read_input_registers(self, address: int, *, count: int, device_id: int) -> Answer:
        """Function code 4."""
        return await self._read(4, address, count, device_id)

    async def _read(self, function_code: int, address: int, count: int, unit: int) -> Answer:
        async with self._lock:  # one request in flight, as devices expect
            transport = self._transport
            if transport is None:
                raise ConnectionException("not connected")
            self._tid = self._tid % 0xFFFF + 1
            answer: asyncio.Future[Answer] = asyncio.get_running_loop().create_future()
            self._waiting = (self._tid, unit, function_code, answer)
            transport.write(_REQUEST.pack(self._tid, 0, 6, unit, function_code, address, count))
            try:
                return await answer
            finally:
                self._waiting = None  # an answer after a timeout has an old id and is dropped

    def data_received(self, data: bytes) -> None:
        """Collect bytes until a whole frame is there, then answer the read in flight (asyncio calls this)."""
        buffer = self._buffer
        buffer += data
        while len(buffer) >= 6:
            tid, protocol, length = _HEADER.unpack_from(buffer)
            if protocol != 0 or not 2 <= length <= MAX_LENGTH:
                self._broken(f"not a Modbus TCP frame (protocol {protocol}, length {length})")
                return
            end = 6 + length
            if len(buffer) < end:
                return
            frame = bytes(buffer[6:end])
            del buffer[:end]
            self._answer(tid, frame)

    def _answer(self, tid: int, frame: bytes) -> None:
        """``frame``: unit id, function code, then the PDU's data."""
        waiting = self._waiting
        if waiting is None or waiting[0] != tid or waiting[3].done():
            _log.debug("Modbus TCP %s:%d: dropped an answer with transaction id %d", self._host, self._port, tid)
            return
        _, unit, function_code, future = waiting
        if frame[0] != unit:
            future.set_exception(
                ModbusIOException(f"the answer comes from unit {frame[0]}, the request went to {unit}")
            )
        elif frame[1] == function_code | 0x80 and len(frame) >= 3:
            future.set_result(Answer(exception_code=frame[2]))
        elif frame[1] != function_code or len(frame) < 3 or len(frame) < 3 + frame[2]:
            future.set_exception(ModbusIOException(f"a malformed answer to function code {function_code}"))
        elif function_code >= 3:
            byte_count = frame[2]
            future.set_result(Answer(registers=list(struct.unpack_from(f">{byte_count // 2}H", frame, 3))))
        else:
            data = frame[3 : 3 + frame[2]]
            future.set_result(Answer(bits=[bool(byte >> bit & 1) for byte in data for bit in range(8)]))

    def _broken(self, why: str) -> None:
        _log.warning("Modbus TCP %s:%d: %s; closing the connection", self._host, self._port, why)
        transport = self._transport
        if transport is not None:
            transport.close()  # connection_lost follows and fails the read in flight
        self._buffer.clear()
