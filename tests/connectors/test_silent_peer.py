"""A peer that accepts TCP connections and never answers: every wait must end, and nothing may leak."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass, field

import pytest

from connectors.modbus.client import ModbusConnector
from connectors.modbus.config import ModbusMachine
from connectors.opcua.client import OpcUaConnector
from connectors.opcua.config import OpcUaMachine
from edge_agent.core.errors import ConnectError, ReadTimeout
from tests.helpers.waiting import wait_until


@dataclass
class SilentPeer:
    port: int = 0
    open_connections: set[asyncio.StreamWriter] = field(default_factory=set)
    received: bytearray = field(default_factory=bytearray)


@pytest.fixture
async def silent_peer() -> AsyncIterator[SilentPeer]:
    peer = SilentPeer()

    async def hold(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        peer.open_connections.add(writer)
        try:
            while chunk := await reader.read(4096):
                peer.received.extend(chunk)
        finally:
            peer.open_connections.discard(writer)
            writer.close()

    server = await asyncio.start_server(hold, "127.0.0.1", 0)
    peer.port = server.sockets[0].getsockname()[1]
    async with server:
        yield peer
        for writer in list(peer.open_connections):
            writer.close()


async def test_opcua_connect_to_a_silent_peer_ends_in_time(silent_peer: SilentPeer) -> None:
    config = OpcUaMachine.model_validate(
        {
            "type": "opcua",
            "id": "mute",
            "endpoint": f"opc.tcp://127.0.0.1:{silent_peer.port}/",
            "interval": "500ms",
            "connect_timeout": "1s",
            "tags": [{"name": "a", "node": "i=2258"}],
        }
    )
    connector = OpcUaConnector(config)
    started = time.monotonic()
    with pytest.raises(ConnectError, match=r"no answer from opc\.tcp://127\.0\.0\.1.* within 1 s"):
        await connector.connect()
    assert time.monotonic() - started < 2.5
    await wait_until(lambda: not silent_peer.open_connections, 5, "the connector closed its socket")


async def test_opcua_connect_cancelled_by_the_runtime_leaves_nothing_open(silent_peer: SilentPeer) -> None:
    config = OpcUaMachine.model_validate(
        {
            "type": "opcua",
            "id": "mute",
            "endpoint": f"opc.tcp://127.0.0.1:{silent_peer.port}/",
            "connect_timeout": "10s",
            "tags": [{"name": "a", "node": "i=2258"}],
        }
    )
    connector = OpcUaConnector(config)
    with pytest.raises(TimeoutError):
        await asyncio.wait_for(connector.connect(), timeout=0.3)
    await wait_until(lambda: not silent_peer.open_connections, 5, "the connector closed its socket")
    await connector.close()


async def test_modbus_silent_peer_read_times_out(silent_peer: SilentPeer) -> None:
    config = ModbusMachine.model_validate(
        {
            "type": "modbus",
            "id": "mute",
            "host": "127.0.0.1",
            "port": silent_peer.port,
            "interval": "500ms",
            "tags": [{"name": "a", "address": 0}, {"name": "b", "table": "input", "address": 0}],
        }
    )
    connector = ModbusConnector(config)
    await connector.connect()  # TCP accepts: the connection itself is fine
    started = time.monotonic()
    with pytest.raises(ReadTimeout):
        await connector.read()
    assert time.monotonic() - started < 1.0  # 90 % of the 400 ms timeout, plus slack for a busy machine
    assert silent_peer.received[7] == 3  # the one request sent was a read of holding registers
    await connector.close()
    await wait_until(lambda: not silent_peer.open_connections, 5, "the connector closed its socket")
