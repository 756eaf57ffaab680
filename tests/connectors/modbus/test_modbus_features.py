"""Modbus depth against a real loopback device: every type, bits, unit ids and device quirks."""

from __future__ import annotations

import math
import struct
import time
from collections.abc import AsyncIterator
from typing import Any

import pytest
from pymodbus import FramerType

from connectors.modbus.client import ModbusConnector
from connectors.modbus.config import ModbusMachine
from edge_agent.core.errors import ReadTimeout
from edge_agent.core.samples import Quality, Sample
from tests.helpers.modbus_device import ModbusTestDevice, UnitImage
from tests.helpers.waiting import wait_until

READ_FUNCTION_CODES = {1, 2, 3, 4}


def words(fmt: str, value: float) -> list[int]:
    data = struct.pack(fmt, value)
    return [int.from_bytes(data[i : i + 2], "big") for i in range(0, len(data), 2)]


def text_words(text: str, registers: int) -> list[int]:
    data = text.encode().ljust(2 * registers, b"\x00")
    return [int.from_bytes(data[i : i + 2], "big") for i in range(0, len(data), 2)]


HOLDING = [0] * 40
HOLDING[0:4] = words(">q", -2)
HOLDING[4:8] = words(">Q", 2**64 - 2)
HOLDING[8:12] = words(">d", math.pi)
HOLDING[12:16] = list(reversed(words(">d", -math.e)))  # CDAB: the four words in reverse order
HOLDING[16:20] = text_words("PUMP-01", 4)
HOLDING[20] = 0b1000_0000_0000_0101  # bits 0, 2 and 15 set
HOLDING[21] = 0xFFFF
HOLDING[30:32] = words(">i", -123456)
UNIT_1 = UnitImage(
    coils=[True, False, True] + [False] * 29,
    discrete_inputs=[False] * 16 + [True] * 16,
    holding=HOLDING,
    input=[0] * 10 + words(">f", 21.5),
)
UNIT_2 = UnitImage(holding=[7, 8, 9], input=words(">f", -1.25))


@pytest.fixture
async def device() -> AsyncIterator[ModbusTestDevice]:
    async with ModbusTestDevice({1: UNIT_1, 2: UNIT_2}) as dev:
        yield dev
    assert dev.function_codes <= READ_FUNCTION_CODES, "a request other than a read was sent"


def machine(device: ModbusTestDevice, tags: list[dict[str, Any]], **keys: Any) -> ModbusMachine:
    return ModbusMachine.model_validate(
        {
            "type": "modbus",
            "id": "dev",
            "host": "127.0.0.1",
            "port": device.port,
            "interval": "3s",
            "tags": tags,
            **keys,
        }
    )


async def read_once(config: ModbusMachine) -> tuple[dict[str, Sample], ModbusConnector]:
    connector = ModbusConnector(config)
    await connector.connect()
    try:
        batch = await connector.read()
    finally:
        await connector.close()
    return {s.tag: s for s in batch.samples}, connector


ALL_TYPES = [
    {"name": "i64", "address": 0, "type": "int64"},
    {"name": "u64", "address": 4, "type": "uint64"},
    {"name": "f64", "address": 8, "type": "float64"},
    {"name": "f64_swapped", "address": 12, "type": "float64", "byte_order": "CDAB"},
    {"name": "label", "address": 16, "type": "string", "length": 4},
    {"name": "bit0", "address": 20, "type": "bool", "bit": 0},
    {"name": "bit1", "address": 20, "type": "bool", "bit": 1},
    {"name": "bit15", "address": 20, "type": "bool", "bit": 15},
    {"name": "word", "address": 20},
    {"name": "minus_one", "address": 21, "type": "int16"},
    {"name": "i32_scaled", "address": 30, "type": "int32", "scale": 0.01, "offset": 1},
    {"name": "coil0", "table": "coil", "address": 0},
    {"name": "coil1", "table": "coil", "address": 1},
    {"name": "coil2", "table": "coil", "address": 2},
    {"name": "di15", "table": "discrete_input", "address": 15},
    {"name": "di16", "table": "discrete_input", "address": 16},
    {"name": "temp", "table": "input", "address": 10, "type": "float32"},
]


async def test_every_type_end_to_end(device: ModbusTestDevice) -> None:
    samples, connector = await read_once(machine(device, ALL_TYPES))
    values = {name: s.value for name, s in samples.items()}
    assert all(s.quality is Quality.GOOD for s in samples.values()), samples
    assert values == {
        "i64": -2,
        "u64": 2**64 - 2,
        "f64": math.pi,
        "f64_swapped": -math.e,
        "label": "PUMP-01",
        "bit0": True,
        "bit1": False,
        "bit15": True,
        "word": 0x8005,
        "minus_one": -1,
        "i32_scaled": pytest.approx(-1233.56),
        "coil0": True,
        "coil1": False,
        "coil2": True,
        "di15": False,
        "di16": True,
        "temp": 21.5,
    }
    assert type(values["coil0"]) is bool
    assert type(values["bit0"]) is bool
    # One read per table: holding 0..31, input 10..11, coils 0..2, discrete inputs 15..16.
    assert connector.requests_per_cycle == 4
    assert sorted((s.function_code, s.address, s.count) for s in device.seen) == [
        (1, 0, 3),
        (2, 15, 2),
        (3, 0, 32),
        (4, 10, 2),
    ]


async def test_several_unit_ids_on_one_connection(device: ModbusTestDevice) -> None:
    tags = [
        {"name": "a", "address": 0},
        {"name": "b", "address": 1, "unit_id": 2},
        {"name": "c", "address": 2, "unit_id": 2},
        {"name": "t2", "table": "input", "address": 0, "type": "float32", "unit_id": 2},
    ]
    samples, connector = await read_once(machine(device, tags))
    assert {n: s.value for n, s in samples.items()} == {"a": 0xFFFF, "b": 8, "c": 9, "t2": -1.25}
    assert connector.requests_per_cycle == 3
    assert sorted((s.unit, s.function_code, s.address, s.count) for s in device.seen) == [
        (1, 3, 0, 1),
        (2, 3, 1, 2),
        (2, 4, 0, 2),
    ]
    assert device.connections_opened == 1


async def test_one_based_addresses(device: ModbusTestDevice) -> None:
    tags = [{"name": "first", "address": 1, "type": "int64"}, {"name": "coil", "table": "coil", "address": 3}]
    samples, _ = await read_once(machine(device, tags, address_base=1))
    assert samples["first"].value == -2
    assert samples["coil"].value is True
    assert sorted((s.function_code, s.address) for s in device.seen) == [(1, 2), (3, 0)]


async def test_one_request_per_tag_and_smaller_requests(device: ModbusTestDevice) -> None:
    tags = [{"name": f"r{i}", "address": i} for i in range(6)]
    _, connector = await read_once(machine(device, tags, one_request_per_tag=True))
    assert connector.requests_per_cycle == 6
    assert [(s.address, s.count) for s in device.seen] == [(i, 1) for i in range(6)]
    device.seen.clear()
    samples, connector = await read_once(machine(device, tags, max_registers_per_request=4))
    assert connector.requests_per_cycle == 2
    assert [(s.address, s.count) for s in device.seen] == [(0, 4), (4, 2)]
    assert all(s.quality is Quality.GOOD for s in samples.values())


async def test_pauses(device: ModbusTestDevice) -> None:
    tags = [{"name": f"r{i}", "address": i} for i in range(3)]
    config = machine(
        device, tags, one_request_per_tag=True, pause_after_connect="200ms", pause_between_requests="100ms"
    )
    connector = ModbusConnector(config)
    started = time.monotonic()
    await connector.connect()
    assert time.monotonic() - started >= 0.2
    started = time.monotonic()
    await connector.read()
    assert time.monotonic() - started >= 0.2  # two pauses between three requests
    await connector.close()


async def test_close_after_each_cycle(device: ModbusTestDevice) -> None:
    connector = ModbusConnector(machine(device, [{"name": "a", "address": 0}], close_after_cycle=True))
    await connector.connect()
    for cycle in range(1, 4):
        batch = await connector.read()
        assert batch.good_count == 1

        def link_closed(n: int = cycle) -> bool:
            return device.connections_closed >= n + 1

        await wait_until(link_closed, 5, "the device saw the link close")
    assert device.connections_opened == 4  # the connect() probe plus one per poll
    await connector.close()


async def test_device_exception_marks_every_tag_bad_without_raising(device: ModbusTestDevice) -> None:
    device.exception = 6
    connector = ModbusConnector(machine(device, ALL_TYPES[:3] + ALL_TYPES[-1:]))
    await connector.connect()
    batch = await connector.read()
    await connector.close()
    assert {s.reason for s in batch.samples} == {"Modbus exception 6: server device busy"}
    assert {s.quality for s in batch.samples} == {Quality.BAD}


async def test_silent_device_raises_read_timeout_and_recovers(device: ModbusTestDevice) -> None:
    config = machine(
        device, [{"name": "a", "address": 0}, {"name": "t", "table": "input", "address": 0}], timeout="200ms"
    )
    connector = ModbusConnector(config)
    await connector.connect()
    device.latency_s = 1.0
    with pytest.raises(ReadTimeout, match="no answer from the device: 1 of 2 request"):
        await connector.read()
    device.latency_s = 0.0
    await connector.close()
    await connector.connect()
    batch = await connector.read()
    assert batch.good_count == 2
    await connector.close()


async def test_one_slow_request_marks_only_its_tags_bad(device: ModbusTestDevice) -> None:
    tags = [
        {"name": "slow", "address": 0},
        {"name": "fast_holding", "address": 30, "type": "int32"},
        {"name": "fast_input", "table": "input", "address": 10, "type": "float32"},
    ]
    config = machine(device, tags, max_gap=0, request_timeout="200ms", interval="2s")
    connector = ModbusConnector(config)
    await connector.connect()
    device.latency_s = 1.0
    device.slow_addresses = {0}
    try:
        batch = await connector.read()
        samples = {s.tag: s for s in batch.samples}
        assert (samples["slow"].quality, samples["slow"].reason) == (Quality.BAD, "no answer within 0.2 s")
        assert samples["fast_holding"].value == -123456
        assert samples["fast_input"].value == 21.5
        # The link was reopened after the timeout, so the late answer could not be taken for the next one.
        assert device.connections_opened == 2
        device.latency_s = 0.0
        batch = await connector.read()
        assert batch.good_count == 3
    finally:
        await connector.close()


async def test_a_poll_never_outlasts_its_timeout(device: ModbusTestDevice) -> None:
    tags = [{"name": "slow", "address": 0}, {"name": "late", "table": "input", "address": 10, "type": "float32"}]
    connector = ModbusConnector(machine(device, tags, interval="500ms"))
    await connector.connect()
    device.latency_s = 2.0
    device.slow_addresses = {0}
    started = time.monotonic()
    try:
        with pytest.raises(ReadTimeout):
            await connector.read()
    finally:
        await connector.close()
    assert time.monotonic() - started < 1.0  # 90 % of the 400 ms timeout (plus slack), not the device's 2 s


async def test_rtu_frames_over_tcp() -> None:
    async with ModbusTestDevice({1: UNIT_1}, framer=FramerType.RTU) as device:
        samples, _ = await read_once(machine(device, ALL_TYPES, framing="rtu_over_tcp"))
        assert all(s.quality is Quality.GOOD for s in samples.values()), samples
        assert samples["f64"].value == math.pi
        assert samples["label"].value == "PUMP-01"
        tcp = ModbusConnector(machine(device, ALL_TYPES[:1], interval="500ms"))
        await tcp.connect()
        with pytest.raises(ReadTimeout):  # an RTU device does not understand Modbus TCP framing
            await tcp.read()
        await tcp.close()


async def test_a_device_that_takes_only_short_reads(device: ModbusTestDevice) -> None:
    device.max_count = 4
    tags = [{"name": f"r{i}", "address": i} for i in range(8)] + [{"name": "wide", "address": 8, "type": "int64"}]
    connector = ModbusConnector(machine(device, tags))
    await connector.connect()
    try:
        for _ in range(2):
            batch = await connector.read()
            assert batch.good_count == 9, batch
        assert connector.requests_per_cycle == 9
    finally:
        await connector.close()
