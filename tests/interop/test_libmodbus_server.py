"""The agent's Modbus connector against a Modbus server we did not write (libmodbus, in C).

The server (``libmodbus_server.c``, built by ``tests/interop/libmodbus.py``) holds every data type
in every byte order, coils, discrete inputs and input registers at known addresses, refuses a hole
in its holding registers with exception 2, and counts the requests it receives by function code.
So the tests check the values, the bad-with-reason tags next to good ones, that a poll sends the
fewest requests the map allows, and that the agent sends no write, on a protocol stack that is
not pymodbus's.
"""

from __future__ import annotations

import asyncio
import socket
import struct
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from connectors.modbus.client import ModbusConnector
from connectors.modbus.config import ModbusMachine
from edge_agent.core.samples import Batch, Quality
from tests.interop.libmodbus import EVERY_TYPE, HOLE, LibmodbusServer

ILLEGAL_ADDRESS = "Modbus exception 2: illegal data address"


@pytest.fixture(scope="module")
def server(libmodbus_binary: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[LibmodbusServer]:
    """One server for the module: the tests only read, and count requests as differences."""
    with LibmodbusServer(libmodbus_binary, tmp_path_factory.mktemp("libmodbus")) as running:
        yield running
    assert running.final is not None, f"the server printed no counters at exit\n{running.log_tail()}"
    assert running.final["writes"] == 0, f"the agent sent write requests: {running.final}"


def machine(server: LibmodbusServer, tags: list[dict[str, Any]], **keys: Any) -> ModbusMachine:
    return ModbusMachine.model_validate(
        {"type": "modbus", "id": "libmodbus", "host": "127.0.0.1", "port": server.port, "interval": "3s"}
        | {"tags": tags, **keys}
    )


async def poll_counted(server: LibmodbusServer, connector: ModbusConnector) -> tuple[Batch, dict[str, int]]:
    """One poll and the requests the server received during it, by function code."""
    before = server.stats()["by_function"]
    batch = await connector.read()
    after = server.stats()["by_function"]
    sent = {code: after[code] - before.get(code, 0) for code in after if after[code] != before.get(code, 0)}
    return batch, sent


async def test_every_type_and_byte_order_in_the_fewest_requests(server: LibmodbusServer) -> None:
    connector = ModbusConnector(machine(server, [tag for tag, _ in EVERY_TYPE]))
    await connector.connect()
    try:
        for _ in range(2):
            batch, sent = await poll_counted(server, connector)
            samples = {s.tag: s for s in batch.samples}
            for tag, value in EVERY_TYPE:
                sample = samples[str(tag["name"])]
                assert sample.quality is Quality.GOOD, sample
                if tag["name"] == "scaled":
                    assert sample.value == pytest.approx(value, abs=1e-9), sample
                else:
                    assert sample.value == value, f"{tag}: read {sample.value!r}, the server holds {value!r}"
                    assert type(sample.value) is type(value), f"{tag}: {sample.value!r} is not a {type(value)}"
            # The fewest requests the map allows: the holding tags span registers 0-104 (at most 125 in
            # one read; no gap longer than max_gap 10), the input registers 0-5, coils 0-15 and
            # discrete inputs 0-12 lie together: one read per table.
            assert sent == {"1": 1, "2": 1, "3": 1, "4": 1}, sent
            assert connector.requests_per_cycle == 4
    finally:
        await connector.close()


async def test_a_refused_address_is_bad_and_the_rest_of_the_poll_good(server: LibmodbusServer) -> None:
    inside = HOLE.start + 2
    tags = [
        {"name": "before_hole", "address": HOLE.start - 3},
        {"name": "in_hole", "address": inside},
        {"name": "after_hole", "address": HOLE.stop + 2},
        {"name": "past_the_map", "address": 5000},  # libmodbus's own bounds check
        {"name": "input", "table": "input", "address": 4},
    ]
    connector = ModbusConnector(machine(server, tags))
    await connector.connect()
    try:
        polls = [await poll_counted(server, connector) for _ in range(2)]
    finally:
        await connector.close()
    for batch, _ in polls:
        samples = {s.tag: s for s in batch.samples}
        assert (samples["before_hole"].quality, samples["before_hole"].value) == (Quality.GOOD, HOLE.start - 3)
        assert (samples["after_hole"].quality, samples["after_hole"].value) == (Quality.GOOD, HOLE.stop + 2)
        assert (samples["input"].quality, samples["input"].value) == (Quality.GOOD, 4321)
        for name in ("in_hole", "past_the_map"):
            assert (samples[name].quality, samples[name].value) == (Quality.BAD, None), samples[name]
            assert samples[name].reason == ILLEGAL_ADDRESS, samples[name]
    (_, first), (_, second) = polls
    # First poll: the joined read of the three holding tags is refused, then each is read alone;
    # 5000 and the input register are a read each. From then on the three stay separate.
    assert first == {"3": 1 + 3 + 1, "4": 1}, first
    assert second == {"3": 3 + 1, "4": 1}, second
    assert connector.requests_per_cycle == 5


async def test_several_agents_read_at_once(server: LibmodbusServer) -> None:
    """The server answers several connections interleaved (a select loop), each with its own values."""
    halves = [EVERY_TYPE[::2], EVERY_TYPE[1::2]]
    connectors = [ModbusConnector(machine(server, [tag for tag, _ in half])) for half in halves]
    connected_before = server.stats()["connections"]
    await asyncio.gather(*(c.connect() for c in connectors))
    try:
        for _ in range(5):
            batches = await asyncio.gather(*(c.read() for c in connectors))
            for batch, half in zip(batches, halves, strict=True):
                values = {s.tag: s.value for s in batch.samples}
                assert batch.good_count == len(half)
                expected = {t["name"]: v for t, v in half}
                if "scaled" in expected:
                    assert values.pop("scaled") == pytest.approx(expected.pop("scaled"))
                assert values == expected
    finally:
        await asyncio.gather(*(c.close() for c in connectors))
    assert server.stats()["connections"] - connected_before >= 2


def test_the_write_counter_counts(libmodbus_binary: Path, tmp_path: Path) -> None:
    """The zero-writes check above can fail: a raw Write Single Register (FC 6) is counted and refused."""
    with LibmodbusServer(libmodbus_binary, tmp_path) as server:
        with socket.create_connection(("127.0.0.1", server.port), timeout=5) as raw:
            # MBAP: transaction 1, protocol 0, length 6, unit 1; PDU: FC 6, address 1, value 7
            raw.sendall(struct.pack(">HHHBBHH", 1, 0, 6, 1, 6, 1, 7))
            answer = raw.recv(64)
        assert answer[7:9] == bytes([0x86, 0x01]), f"want exception 1 to FC 6, got {answer.hex()}"
        assert server.stats()["writes"] == 1
    assert server.final is not None
    assert server.final["writes"] == 1
