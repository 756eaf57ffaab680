"""The connector's fast paths give exactly what the plain ones give: block decoding, samples, register parsing."""

from __future__ import annotations

import math
import random
import struct
from typing import Any

import pytest
from pymodbus.exceptions import ModbusIOException
from pymodbus.pdu.register_message import ReadHoldingRegistersResponse, ReadInputRegistersResponse

from bench.modbus_throughput import device_tags, minimum_requests
from connectors.modbus.client import good_sample
from connectors.modbus.config import ModbusMachine, ModbusTag
from connectors.modbus.decode import decode_value
from connectors.modbus.plan import PlanOptions, ReadRequest, plan_requests
from connectors.modbus.responses import FastHoldingRegistersResponse, FastInputRegistersResponse
from edge_agent.core.errors import DecodeError
from edge_agent.core.samples import Quality, Sample

ORDERS = ("ABCD", "DCBA", "BADC", "CDAB")
NUMBERS = ("int16", "uint16", "int32", "uint32", "float32", "int64", "uint64", "float64")
SIZES = {"int16": 1, "uint16": 1, "int32": 2, "uint32": 2, "float32": 2, "int64": 4, "uint64": 4, "float64": 4}


def reference(request: ReadRequest, data: list[int]) -> list[object]:
    """What decoding each tag on its own gives: its value, or the DecodeError's text."""
    expected: list[object] = []
    for tag in request.tags:
        words = list(request.slice_of(tag, data))
        try:
            expected.append(
                decode_value(words, tag.type, tag.byte_order, scale=tag.scale, offset=tag.offset, bit=tag.bit)
            )
        except DecodeError as exc:
            expected.append(f"error: {exc}")
    return expected


def outcomes_of(request: ReadRequest, data: list[int]) -> tuple[list[object], bool]:
    outcomes, all_values = request.decode(data)
    return [f"error: {o}" if isinstance(o, DecodeError) else o for o in outcomes], all_values


def same(left: list[object], right: list[object]) -> bool:
    """Equal, with NaN equal to NaN and int/float told apart (an int must stay an int)."""
    return len(left) == len(right) and all(
        type(a) is type(b)
        and (a == b or (isinstance(a, float) and isinstance(b, float) and math.isnan(a) and math.isnan(b)))
        for a, b in zip(left, right, strict=True)
    )


def random_map(rng: random.Random, count: int) -> list[dict[str, Any]]:
    tags: list[dict[str, Any]] = []
    address = 0
    for index in range(count):
        kind = rng.choice([*NUMBERS, "string", "bool"])
        tag: dict[str, Any] = {"name": f"t{index}", "address": address, "type": kind}
        if kind == "string":
            tag["length"] = rng.randint(1, 4)
            tag["byte_order"] = rng.choice(ORDERS)
        elif kind == "bool":
            tag["bit"] = rng.randint(0, 15)
        else:
            tag["byte_order"] = rng.choice(ORDERS)
            if rng.random() < 0.3:
                tag["scale"], tag["offset"] = rng.choice([(0.1, 0.0), (1.0, -5.0), (2.5, 1.5)])
        tags.append(tag)
        span = tag.get("length", SIZES.get(kind, 1))
        if rng.random() < 0.15:  # a second tag reading the same registers the same way
            tags.append({**tag, "name": f"t{index}_again"})
        address += span + rng.choice([0, 0, 0, 1, 3])
    return tags


@pytest.mark.parametrize("seed", range(12))
def test_block_decoding_equals_decoding_each_tag_alone(seed: int) -> None:
    rng = random.Random(seed)
    machine = ModbusMachine.model_validate(
        {"type": "modbus", "id": "m", "host": "127.0.0.1", "tags": random_map(rng, 60), "max_gap": 4}
    )
    for request in plan_requests(machine.tags, PlanOptions.of(machine)):
        for _ in range(20):
            data = [
                rng.choice([0, 0xFFFF, 0x7FC0, 0x7F80, 0x4120, rng.randrange(0x10000)]) for _ in range(request.count)
            ]
            got, all_values = outcomes_of(request, data)
            expected = reference(request, data)
            assert same(got, expected), (request.describe(), data)
            assert all_values == (not any(isinstance(e, str) and e.startswith("error: ") for e in expected))


@pytest.mark.parametrize("order", ORDERS)
@pytest.mark.parametrize("kind", NUMBERS)
def test_every_type_and_order_in_a_block(kind: str, order: str) -> None:
    tags = [{"name": f"v{i}", "address": i * SIZES[kind], "type": kind, "byte_order": order} for i in range(5)]
    machine = ModbusMachine.model_validate({"type": "modbus", "id": "m", "host": "h", "tags": tags})
    (request,) = plan_requests(machine.tags)
    rng = random.Random(f"{kind}{order}")
    data = [rng.randrange(0x10000) for _ in range(request.count)]
    got, _ = outcomes_of(request, data)
    assert same(got, reference(request, data))


def test_nan_and_infinity_are_bad_with_the_plain_reason() -> None:
    tags = [{"name": f"f{i}", "address": 2 * i, "type": "float32"} for i in range(3)]
    machine = ModbusMachine.model_validate({"type": "modbus", "id": "m", "host": "h", "tags": tags})
    (request,) = plan_requests(machine.tags)
    data = [0x4120, 0, 0x7FC0, 0, 0x7F80, 0]  # 10.0, NaN, +inf
    outcomes, all_values = request.decode(data)
    assert not all_values
    assert outcomes[0] == 10.0
    assert str(outcomes[1]) == "the device sent nan (not a finite number) for this float32"
    assert str(outcomes[2]) == "the device sent inf (not a finite number) for this float32"


def test_bits_of_coils() -> None:
    tags = [{"name": f"c{i}", "table": "coil", "address": i} for i in (0, 3, 9)]
    machine = ModbusMachine.model_validate({"type": "modbus", "id": "m", "host": "h", "tags": tags})
    (request,) = plan_requests(machine.tags)
    bits = [i % 3 == 0 for i in range(16)]  # padded to whole bytes, as pymodbus answers
    assert request.decode(bits) == ([True, True, True], True)


def test_a_good_sample_is_the_sample_the_dataclass_makes() -> None:
    made = good_sample("flow", 12.5, 1_700_000_000_000_000_000, "l/min")
    plain = Sample("flow", 12.5, 1_700_000_000_000_000_000, Quality.GOOD, None, "l/min")
    assert made == plain
    assert type(made) is Sample
    assert (made.tag, made.value, made.timestamp_ns, made.quality, made.reason, made.unit) == (
        "flow",
        12.5,
        1_700_000_000_000_000_000,
        Quality.GOOD,
        None,
        "l/min",
    )
    with pytest.raises(AttributeError):
        made.value = 1.0  # type: ignore[misc]  # still frozen


@pytest.mark.parametrize(
    ("fast", "plain"),
    [
        (FastHoldingRegistersResponse, ReadHoldingRegistersResponse),
        (FastInputRegistersResponse, ReadInputRegistersResponse),
    ],
)
@pytest.mark.parametrize("registers", [0, 1, 2, 62, 125])
def test_fast_register_responses_parse_like_pymodbus(fast: Any, plain: Any, registers: int) -> None:
    words = [(i * 7919) % 0x10000 for i in range(registers)]
    payload = bytes([2 * registers]) + struct.pack(f">{registers}H", *words)
    ours, theirs = fast(), plain()
    ours.decode(payload)
    theirs.decode(payload)
    assert ours.registers == theirs.registers == words
    assert ours.function_code == theirs.function_code
    if registers > 8:
        assert f"({registers} registers)" in str(ours)


@pytest.mark.parametrize("fast", [FastHoldingRegistersResponse, FastInputRegistersResponse])
def test_a_byte_count_past_the_packet_is_refused_as_pymodbus_does(fast: Any) -> None:
    with pytest.raises(ModbusIOException, match="byte_count 10 > length of packet 5"):
        fast().decode(bytes([10, 0, 1, 0, 2]))


def test_the_bench_minimum_matches_the_plan_for_small_maps() -> None:
    for registers in (2, 124, 126, 250, 1000):
        machine = ModbusMachine.model_validate(
            {"type": "modbus", "id": "m", "host": "h", "tags": device_tags(registers)}
        )
        tags: list[ModbusTag] = list(machine.tags)
        assert len(plan_requests(tags)) == minimum_requests(tags) == math.ceil(len(tags) / 62)
