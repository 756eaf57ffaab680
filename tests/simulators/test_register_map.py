"""The wire encodings as pure functions, and the published map, checked without sockets."""

from __future__ import annotations

import struct

import pytest

from simulators import MachineState, SimulatorError, describe
from simulators.register_map import (
    float32_round,
    float32_words,
    holding_image,
    input_image,
    int16_word,
    uint32_words,
)


def test_float32_is_big_endian_words_abcd() -> None:
    assert float32_words(1.0) == (0x3F80, 0x0000)
    assert float32_words(-2.5) == (0xC020, 0x0000)
    hi, lo = float32_words(123.456)
    assert struct.unpack(">f", struct.pack(">HH", hi, lo))[0] == float32_round(123.456)
    assert float32_round(1e300) == pytest.approx(3.4028234663852886e38)


def test_int16_scaled_by_ten_twos_complement_and_saturating() -> None:
    assert int16_word(12.34) == 123
    assert int16_word(-1.0) == 0xFFF6
    assert int16_word(5000.0) == 32767
    assert int16_word(-5000.0) == 0x8000


def test_uint32_high_word_first() -> None:
    assert uint32_words(0x12345678) == (0x1234, 0x5678)
    assert uint32_words(2**32 + 5) == (0, 5)


def test_images_follow_the_published_map() -> None:
    values = [1.0, 2.5, -3.0]
    assert input_image(values) == [0x3F80, 0, 0x4020, 0, 0xC040, 0]
    holding = holding_image(values, parts_count=70000, state=MachineState.SETUP)
    assert holding[:3] == [10, 25, 0xFFE2]
    assert holding[3:100] == [0] * 97
    assert holding[100:103] == [1, 70000 - 65536, 3]


def test_describe_default_plant() -> None:
    description = describe()
    assert [m.machine_id for m in description.machines] == ["pump-1", "press-1"]
    pump = description.machine("pump-1")
    assert pump.modbus_unit_id == 1
    flow = next(s for s in pump.signals if s.name == "flow")
    assert flow.opcua_node == "nsu=urn:edge-agent:simulator;s=pump-1.flow"
    assert [s.modbus_input_address for s in pump.signals] == [0, 2, 4, 6, 8]
    assert [s.modbus_holding_address for s in pump.signals] == [0, 1, 2, 3, 4]
    assert description.to_dict()["namespace_uri"] == "urn:edge-agent:simulator"


@pytest.mark.parametrize(
    ("machines", "message"),
    [
        (["robot-1"], "unknown kind 'robot'"),
        (["pump-1", "pump-1"], "appears twice"),
        (["pump 1"], "not allowed"),
        ("pump-1", "is a string"),
        ([], "empty"),
    ],
)
def test_bad_machine_lists_are_rejected_with_the_fix(machines: list[str] | str, message: str) -> None:
    with pytest.raises(SimulatorError, match=message) as info:
        describe(machines)
    assert "Fix:" in str(info.value)
