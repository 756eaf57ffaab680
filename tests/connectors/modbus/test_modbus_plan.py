"""Request batching: the fewest reads, never more than the protocol allows."""

from __future__ import annotations

from typing import Any

import pytest

from connectors.modbus.config import ModbusMachine, ModbusTag
from connectors.modbus.plan import PlanOptions, plan_requests, split_request


def tag(name: str, address: int, data_type: str | None = None, table: str = "holding", **extra: Any) -> ModbusTag:
    typed = {"type": data_type} if data_type else {}
    return ModbusTag.model_validate({"name": name, "address": address, "table": table, **typed, **extra})


def spans(tags: list[ModbusTag], options: PlanOptions | None = None, **limits: int) -> list[tuple[str, int, int]]:
    return [(r.table, r.start, r.count) for r in plan_requests(tags, options, **limits)]


def test_contiguous_tags_make_one_request() -> None:
    tags = [tag(f"t{i}", 2 * i, "float32", "input") for i in range(10)]
    assert spans(tags) == [("input", 0, 20)]


def test_order_in_the_config_does_not_matter() -> None:
    tags = [tag("c", 4), tag("a", 0), tag("b", 2, "int32")]
    requests = plan_requests(tags)
    assert [(r.start, r.count) for r in requests] == [(0, 5)]
    assert [t.name for t in requests[0].tags] == ["a", "b", "c"]


def test_small_gaps_are_bridged_large_gaps_split() -> None:
    tags = [tag("a", 0), tag("b", 5), tag("c", 100), tag("d", 101, "uint32")]
    assert spans(tags, max_gap=10) == [("holding", 0, 6), ("holding", 100, 3)]
    assert spans(tags, max_gap=3) == [("holding", 0, 1), ("holding", 5, 1), ("holding", 100, 3)]
    assert spans(tags, max_gap=0) == [("holding", 0, 1), ("holding", 5, 1), ("holding", 100, 3)]
    assert spans(tags, max_gap=100) == [("holding", 0, 103)]


def test_tables_are_never_joined() -> None:
    tags = [tag("h", 0), tag("i", 1, table="input"), tag("h2", 1)]
    assert spans(tags) == [("holding", 0, 2), ("input", 1, 1)]


def test_requests_never_exceed_125_registers() -> None:
    tags = [tag(f"t{i}", 2 * i, "float32") for i in range(200)]  # 400 contiguous registers
    requests = plan_requests(tags)
    assert [r.count for r in requests] == [124, 124, 124, 28]  # a float32 never straddles two reads
    assert len(requests) == 4  # ceil(400 / 125) is the lower bound; 4 meets it
    assert sum(len(r.tags) for r in requests) == 200
    assert spans(tags[:3], max_registers=4) == [("holding", 0, 4), ("holding", 4, 2)]


def test_a_block_of_exactly_125_registers_is_one_request() -> None:
    tags = [tag(f"t{i}", i) for i in range(125)]
    assert spans(tags) == [("holding", 0, 125)]
    assert spans([*tags, tag("x", 125)]) == [("holding", 0, 125), ("holding", 125, 1)]


def test_simulator_like_map_needs_three_requests() -> None:
    # Input registers: 8 float32 signals; holding: 8 int16 signals, a uint32 counter at 100, a state at 102.
    tags = [tag(f"in{i}", 2 * i, "float32", "input") for i in range(8)]
    tags += [tag(f"h{i}", i, "int16") for i in range(8)]
    tags += [tag("parts", 100, "uint32"), tag("state", 102)]
    assert spans(tags) == [("holding", 0, 8), ("holding", 100, 3), ("input", 0, 16)]


def test_same_register_read_twice_shares_the_request() -> None:
    tags = [tag("raw", 10, "int16"), tag("scaled", 10, "int16", scale=0.1)]
    requests = plan_requests(tags)
    assert [(r.start, r.count, len(r.tags)) for r in requests] == [(10, 1, 2)]


def test_slice_of_slices_the_answer() -> None:
    request = plan_requests([tag("a", 10), tag("b", 12, "uint32")])[0]
    answer = [1, 2, 3, 4]
    assert list(request.slice_of(request.tags[0], answer)) == [1]
    assert list(request.slice_of(request.tags[1], answer)) == [3, 4]
    assert request.function_code == 3


def test_split_request_reads_each_position_alone() -> None:
    request = plan_requests([tag("a", 0), tag("b", 1, "uint32"), tag("b2", 1, "uint32", scale=2.0), tag("c", 8)])[0]
    parts = split_request(request)
    assert [(p.start, p.count, len(p.tags)) for p in parts] == [(0, 1, 1), (1, 2, 2), (8, 1, 1)]


def test_invalid_limits() -> None:
    with pytest.raises(ValueError, match="max_registers"):
        plan_requests([tag("a", 0)], max_registers=0)


def test_bits_are_joined_per_bit_table() -> None:
    tags = [tag(f"c{i}", 3 * i, table="coil") for i in range(100)] + [tag("d", 7, table="discrete_input")]
    requests = plan_requests(tags)
    assert [(r.table, r.start, r.count, r.function_code) for r in requests] == [
        ("coil", 0, 298, 1),
        ("discrete_input", 7, 1, 2),
    ]
    assert all(r.is_bits for r in requests)
    assert spans(tags, PlanOptions(max_bits=100)) == [
        ("coil", 0, 100),
        ("coil", 102, 100),
        ("coil", 204, 94),
        ("discrete_input", 7, 1),
    ]
    # The gap for bits is 16 per register of max_gap.
    far = [tag("c0", 0, table="coil"), tag("c1", 161, table="coil")]
    assert len(plan_requests(far, PlanOptions(max_gap=10))) == 1
    assert len(plan_requests([far[0], tag("c2", 162, table="coil")], PlanOptions(max_gap=10))) == 2


def test_unit_ids_are_never_joined() -> None:
    tags = [tag("a", 0), tag("b", 1, unit_id=2), tag("c", 2, unit_id=2), tag("d", 3, unit_id=1)]
    requests = plan_requests(tags, PlanOptions(unit_id=1))
    assert [(r.unit_id, r.start, r.count) for r in requests] == [(1, 0, 4), (2, 1, 2)]
    assert [t.name for t in requests[0].tags] == ["a", "d"]
    assert [(r.unit_id, r.start) for r in split_request(requests[1])] == [(2, 1), (2, 2)]


def test_one_based_addresses_go_out_one_lower() -> None:
    tags = [tag("first", 1), tag("second", 2, "float32")]
    requests = plan_requests(tags, PlanOptions(address_base=1))
    assert [(r.start, r.count) for r in requests] == [(0, 3)]
    assert list(requests[0].slice_of(tags[1], [10, 20, 30])) == [20, 30]
    assert requests[0].describe() == "holding registers 0-2 of unit 1"


def test_one_request_per_tag() -> None:
    tags = [tag("a", 0), tag("b", 1), tag("b_again", 1), tag("c", 2, "float32")]
    requests = plan_requests(tags, PlanOptions(one_request_per_tag=True))
    assert [(r.start, r.count, len(r.tags)) for r in requests] == [(0, 1, 1), (1, 1, 2), (2, 2, 1)]


def test_options_of_a_machine() -> None:
    machine = ModbusMachine.model_validate(
        {
            "type": "modbus",
            "id": "m",
            "host": "h",
            "unit_id": 3,
            "address_base": 1,
            "max_gap": 0,
            "max_registers_per_request": 10,
            "max_bits_per_request": 16,
            "one_request_per_tag": True,
            "tags": [{"name": "a", "address": 1}],
        }
    )
    assert PlanOptions.of(machine) == PlanOptions(3, 1, 0, 10, 16, True)
