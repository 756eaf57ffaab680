"""The connector's own Modbus TCP link against a scripted loopback server: framing corner cases devices produce."""

from __future__ import annotations

import asyncio
import struct
from collections.abc import AsyncIterator, Callable
from typing import Any

import pytest
from pymodbus.exceptions import ConnectionException, ModbusIOException

from connectors.modbus.client import ModbusConnector
from connectors.modbus.config import ModbusMachine
from connectors.modbus.tcp_link import ModbusTcpLink
from edge_agent.core.errors import ConnectError
from edge_agent.core.samples import Quality

Reply = Callable[[int, int, int, int, int], list[bytes]]
"""(transaction id, unit, function code, start, count) -> the chunks to send back."""


def frame(tid: int, unit: int, pdu: bytes) -> bytes:
    return struct.pack(">HHHB", tid, 0, len(pdu) + 1, unit) + pdu


def registers(tid: int, unit: int, function_code: int, start: int, count: int) -> bytes:
    """Register ``start + i`` holds ``start + i``."""
    values = [start + i for i in range(count)]
    return frame(tid, unit, struct.pack(f">BB{count}H", function_code, 2 * count, *values))


class ScriptedServer:
    """Answers every request with what ``reply`` returns, chunk by chunk; counts requests and write requests."""

    def __init__(self, reply: Reply) -> None:
        self.reply = reply
        self.requests = 0
        self.writes = 0
        self.port = 0
        self._server: asyncio.Server | None = None

    async def __aenter__(self) -> ScriptedServer:
        self._server = await asyncio.start_server(self._serve, "127.0.0.1", 0)
        self.port = self._server.sockets[0].getsockname()[1]
        return self

    async def __aexit__(self, *exc: object) -> None:
        assert self._server is not None
        self._server.close()
        await self._server.wait_closed()

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            while True:
                request = await reader.readexactly(12)
                tid, _, _, unit, function_code, start, count = struct.unpack(">HHHBBHH", request)
                self.requests += 1
                self.writes += function_code not in (1, 2, 3, 4)
                for chunk in self.reply(tid, unit, function_code, start, count):
                    writer.write(chunk)
                    await writer.drain()
                    await asyncio.sleep(0.001)
        except (asyncio.IncompleteReadError, ConnectionError):
            pass
        finally:
            writer.close()


@pytest.fixture
async def link_to() -> AsyncIterator[Callable[[ScriptedServer], Any]]:
    links: list[ModbusTcpLink] = []

    async def connect(server: ScriptedServer) -> ModbusTcpLink:
        link = ModbusTcpLink("127.0.0.1", server.port, timeout=5)
        assert await link.connect()
        links.append(link)
        return link

    yield connect
    for link in links:
        link.close()


async def test_an_answer_split_into_single_bytes_is_put_together(link_to: Any) -> None:
    def reply(tid: int, unit: int, fc: int, start: int, count: int) -> list[bytes]:
        whole = registers(tid, unit, fc, start, count)
        return [whole[i : i + 1] for i in range(len(whole))]

    async with ScriptedServer(reply) as server:
        link = await link_to(server)
        answer = await link.read_holding_registers(100, count=5, device_id=3)
        assert answer.registers == [100, 101, 102, 103, 104]
        assert not answer.isError()
        assert server.writes == 0


async def test_a_late_answer_to_an_earlier_request_is_dropped(link_to: Any) -> None:
    def reply(tid: int, unit: int, fc: int, start: int, count: int) -> list[bytes]:
        stale = registers((tid - 1) or 0xFFFF, unit, fc, 9000, count)  # what a slow device sends late
        return [stale, registers(tid, unit, fc, start, count)]

    async with ScriptedServer(reply) as server:
        link = await link_to(server)
        for start in (0, 10, 20):
            answer = await link.read_input_registers(start, count=2, device_id=1)
            assert answer.registers == [start, start + 1]


async def test_exceptions_bits_and_two_answers_in_one_segment(link_to: Any) -> None:
    def reply(tid: int, unit: int, fc: int, start: int, count: int) -> list[bytes]:
        if start == 7:
            return [frame(tid, unit, bytes([fc | 0x80, 2]))]  # illegal data address
        if fc == 1:
            return [frame(tid, unit, bytes([fc, 2, 0b1000_0101, 0b0000_0001]))]
        return [registers(tid, unit, fc, start, count) + registers(tid + 1, unit, fc, 5000, 1)]  # extra: dropped

    async with ScriptedServer(reply) as server:
        link = await link_to(server)
        refused = await link.read_holding_registers(7, count=1, device_id=1)
        assert refused.isError()
        assert refused.exception_code == 2
        coils = await link.read_coils(0, count=9, device_id=1)
        assert coils.bits[:9] == [True, False, True, False, False, False, False, True, True]
        answer = await link.read_holding_registers(1, count=1, device_id=1)
        assert answer.registers == [1]
        assert (await link.read_holding_registers(2, count=1, device_id=1)).registers == [2]


async def test_an_answer_from_another_unit_fails_that_read_only(link_to: Any) -> None:
    def reply(tid: int, unit: int, fc: int, start: int, count: int) -> list[bytes]:
        return [registers(tid, unit + 1 if start == 0 else unit, fc, start, count)]

    async with ScriptedServer(reply) as server:
        link = await link_to(server)
        with pytest.raises(ModbusIOException, match="the answer comes from unit 2, the request went to 1"):
            await link.read_holding_registers(0, count=1, device_id=1)
        assert (await link.read_holding_registers(4, count=1, device_id=1)).registers == [4]


async def test_bytes_that_are_not_modbus_tcp_close_the_connection(link_to: Any) -> None:
    def reply(tid: int, unit: int, fc: int, start: int, count: int) -> list[bytes]:
        return [b"HTTP/1.1 400 Bad Request\r\n\r\n"]  # a web server on port 502, say

    async with ScriptedServer(reply) as server:
        link = await link_to(server)
        with pytest.raises(ConnectionException):
            await link.read_holding_registers(0, count=1, device_id=1)
        assert not link.connected


async def test_the_connector_reports_garbage_as_a_lost_connection_and_reconnects() -> None:
    garbage = True

    def reply(tid: int, unit: int, fc: int, start: int, count: int) -> list[bytes]:
        return [b"\x00\x01\x00\x07\xff\xff\xff\xff"] if garbage else [registers(tid, unit, fc, start, count)]

    async with ScriptedServer(reply) as server:
        config = ModbusMachine.model_validate(
            {
                "type": "modbus",
                "id": "gw",
                "host": "127.0.0.1",
                "port": server.port,
                "interval": "3s",
                "tags": [{"name": "a", "address": 3}, {"name": "b", "address": 4}],
            }
        )
        connector = ModbusConnector(config)
        await connector.connect()
        try:
            with pytest.raises(ConnectError, match="connection lost while reading"):
                await connector.read()
            garbage = False
            await connector.connect()
            batch = await connector.read()
        finally:
            await connector.close()
        assert [(s.tag, s.value, s.quality) for s in batch.samples] == [("a", 3, Quality.GOOD), ("b", 4, Quality.GOOD)]
        assert server.writes == 0
