"""The agent's Modbus RTU over a serial line, against libmodbus's RTU server (not pymodbus).

A socat pseudo-terminal pair is the cable; libmodbus answers as unit 3 on one end, the agent's
serial connector reads on the other. RTU frames (address, CRC, lengths) come from libmodbus, so a
framing mistake shared by pymodbus's client and server cannot pass. Another unit id on the same
line gets no answer, as on a real RS-485 bus: its tags are bad, the rest good. The same server
behind a transparent serial-to-TCP gateway (socat) is read with ``framing: rtu_over_tcp``.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from connectors.modbus.client import ModbusConnector
from connectors.modbus.config import ModbusMachine
from edge_agent.core.samples import Quality
from tests.interop.libmodbus import EVERY_TYPE, HOLE, LibmodbusServer, SerialGateway, SerialPair

UNIT = 3


@pytest.fixture(scope="module")
def line(
    libmodbus_binary: Path, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[tuple[SerialPair, LibmodbusServer]]:
    folder = tmp_path_factory.mktemp("libmodbus-rtu")
    with (
        SerialPair(folder) as pair,
        LibmodbusServer(libmodbus_binary, folder, serial=pair.server_end, unit=UNIT) as server,
    ):
        yield pair, server
    assert server.final is not None, server.log_tail()
    assert server.final["writes"] == 0, f"the agent sent write requests: {server.final}"


def serial_machine(pair: SerialPair, tags: list[dict[str, Any]], **keys: Any) -> ModbusMachine:
    return ModbusMachine.model_validate(
        {
            "type": "modbus",
            "id": "rtu-line",
            "serial": {"device": pair.agent_end, "baudrate": 19200, "parity": "N", "stopbits": 1},
            "unit_id": UNIT,
            "interval": "5s",
            "tags": tags,
            **keys,
        }
    )


async def test_every_type_over_rtu_in_the_fewest_requests(line: tuple[SerialPair, LibmodbusServer]) -> None:
    pair, server = line
    connector = ModbusConnector(serial_machine(pair, [tag for tag, _ in EVERY_TYPE]))
    await connector.connect()
    try:
        before = server.stats()["by_function"]
        batch = await connector.read()
        after = server.stats()["by_function"]
    finally:
        await connector.close()
    samples = {s.tag: s for s in batch.samples}
    for tag, value in EVERY_TYPE:
        sample = samples[str(tag["name"])]
        assert sample.quality is Quality.GOOD, sample
        assert sample.value == (pytest.approx(value) if tag["name"] == "scaled" else value), sample
    assert {code: after[code] - before.get(code, 0) for code in after} == {"1": 1, "2": 1, "3": 1, "4": 1}


async def test_a_silent_unit_and_a_refused_address_leave_the_rest_good(
    line: tuple[SerialPair, LibmodbusServer],
) -> None:
    pair, server = line
    before = server.stats()["requests"]
    tags = [
        {"name": "good", "address": HOLE.start - 3},
        {"name": "in_hole", "address": HOLE.start + 1},
        {"name": "other_unit", "address": 0, "unit_id": UNIT + 1},
        {"name": "input", "table": "input", "address": 4},
    ]
    connector = ModbusConnector(serial_machine(pair, tags, max_gap=0, timeout="4s", request_timeout="500ms"))
    await connector.connect()
    try:
        batch = await connector.read()
    finally:
        await connector.close()
    samples = {s.tag: s for s in batch.samples}
    assert (samples["good"].quality, samples["good"].value) == (Quality.GOOD, HOLE.start - 3)
    assert (samples["input"].quality, samples["input"].value) == (Quality.GOOD, 4321)
    assert samples["in_hole"].quality is Quality.BAD
    assert samples["in_hole"].reason == "Modbus exception 2: illegal data address"
    assert (samples["other_unit"].quality, samples["other_unit"].reason) == (Quality.BAD, "no answer within 0.5 s")
    assert server.stats()["requests"] - before == 3, "unit 3 saw its three requests, not the one for unit 4"


async def test_rtu_over_tcp_through_a_transparent_gateway(libmodbus_binary: Path, tmp_path: Path) -> None:
    with (
        SerialGateway(tmp_path) as gateway,
        LibmodbusServer(libmodbus_binary, tmp_path, serial=gateway.device, unit=UNIT) as server,
    ):
        config = ModbusMachine.model_validate(
            {
                "type": "modbus",
                "id": "gateway",
                "host": "127.0.0.1",
                "port": gateway.port,
                "framing": "rtu_over_tcp",
                "unit_id": UNIT,
                "interval": "5s",
                "tags": [tag for tag, _ in EVERY_TYPE],
            }
        )
        connector = ModbusConnector(config)
        await connector.connect()
        try:
            batch = await connector.read()
        finally:
            await connector.close()
        counted = server.stats()
    samples = {s.tag: s for s in batch.samples}
    for tag, value in EVERY_TYPE:
        sample = samples[str(tag["name"])]
        assert sample.quality is Quality.GOOD, sample
        assert sample.value == (pytest.approx(value) if tag["name"] == "scaled" else value), sample
    assert counted["by_function"] == {"1": 1, "2": 1, "3": 1, "4": 1}, counted
    assert server.final is not None
    assert server.final["writes"] == 0
