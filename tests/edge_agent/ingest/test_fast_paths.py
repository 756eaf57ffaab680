"""The bridge's fast paths give exactly what the careful paths give.

- the bridge's JSON hot path ``telemetry_lines`` (orjson) returns the same lines as
  ``to_line_protocol(decode_json(...))`` and raises the same ``PayloadError`` for every payload, checked
  on a seeded stream of mostly-broken messages; ``format_floats`` is ``repr`` on
  seeded doubles of every magnitude, densely around the magnitudes where notations change;
- the one-regex line-protocol check accepts only lines the character-by-character check accepts
  (anything else goes through the latter, which has the last word), checked on seeded mutations
  of valid lines.
"""

from __future__ import annotations

import json
import math
import random
import struct
from collections.abc import Callable

import pytest

from edge_agent.core.errors import PayloadError
from edge_agent.core.origin import Origin
from edge_agent.core.samples import Batch, Quality, Sample
from edge_agent.delivery.payloads import decode_json, encode_json, encode_line_protocol, to_line_protocol
from edge_agent.ingest.fastjson import format_floats, telemetry_lines
from edge_agent.ingest.lineproto import _SIMPLE_LINE, MIN_TIMESTAMP_NS, _check_line, check_line_protocol

T = 1_763_800_000_123_456_789
VALUES: list[object] = [1, 0, -5, 2**70, 10**400, 1.5, -0.0, 1e308, True, False, 'a b"c\\d\ne', "", None, [1], {"a": 1}]
NAMES: list[object] = ["s", "a b", "x,y=z", "q\\", '"', "", None, 5, True]


def outcome(convert: object, payload: bytes) -> tuple[str, object]:
    try:
        return "lines", convert(payload)  # type: ignore[operator]
    except PayloadError as exc:
        return "error", str(exc)


def careful(payload: bytes) -> list[str]:
    return to_line_protocol(decode_json(payload))


def random_message(rnd: random.Random) -> dict[str, object]:
    message: dict[str, object] = {
        "schema": rnd.choice([1, 1, 1, 1, True, 1.0, 2, None]),
        "site": rnd.choice(["s", "s s", 5]),
        "area": "a",
        "line": "l,=",
        "machine": rnd.choice(["m", "m\\"]),
    }
    if rnd.random() < 0.95:
        message["polled_at"] = rnd.choice([T, T, True, 1.0, "x"])
    samples: list[object] = []
    for _ in range(rnd.randint(0, 4)):
        item: dict[str, object] = {}
        if rnd.random() < 0.97:
            item["tag"] = rnd.choice([*NAMES[:5], rnd.choice(NAMES)])
        if rnd.random() < 0.97:
            item["t"] = rnd.choice([T, T, T, True, 1.5, -1])
        if rnd.random() < 0.97:
            item["q"] = rnd.choice(["good", "good", "bad", "uncertain", "GOOD", None, 1])
        if rnd.random() < 0.95:
            item["v"] = rnd.choice(VALUES)
        if rnd.random() < 0.3:
            item["reason"] = rnd.choice(NAMES)
        if rnd.random() < 0.3:
            item["unit"] = rnd.choice(NAMES)
        samples.append(item if rnd.random() < 0.98 else rnd.choice([1, "x", None]))
    message["samples"] = samples if rnd.random() < 0.98 else {"a": 1}
    return message


def test_json_fast_path_matches_the_careful_path_on_random_messages() -> None:
    rnd = random.Random(20261122)
    converted = 0
    for _ in range(20000):
        payload = json.dumps(random_message(rnd)).encode()
        expected = outcome(careful, payload)
        assert outcome(telemetry_lines, payload) == expected, payload
        converted += expected[0] == "lines"
    assert converted > 500  # the stream exercised the success path too, not only errors


def test_json_fast_path_matches_on_encoded_batches_and_broken_json() -> None:
    origin = Origin("plant 1", "press,shop", "line=2", "pump-1")
    batch = Batch(
        "pump\\1",
        (
            Sample("flow", 12.5, T, unit="m3/h"),
            Sample("count", 7, T + 1),
            Sample("running", True, T + 2),
            Sample("mode", 'AUTO "2"', T + 3),
            Sample("pressure", 3.25, T + 4, Quality.UNCERTAIN, "sensor warming up"),
            Sample.bad("temperature", "Modbus exception 2\n(illegal data address)", T + 5),
            Sample("tiny", 5e-324, T + 6),
            Sample("nan", float("nan"), T + 7),
        ),
        polled_at_ns=T,
    )
    payload = encode_json(batch, origin)
    assert telemetry_lines(payload) == careful(payload) == encode_line_protocol(batch, origin).decode().split("\n")
    huge = payload.replace(b'"polled_at":', b'"polled_at":' + b"1" * 5000 + b',"x":')  # over the int digit limit
    for broken in (huge, b'{"schema": 1,', b"{\xff}", b'{"schema": 1, "v": NaN}', b"[1]", b" " * (5 * 1024 * 1024)):
        assert outcome(telemetry_lines, broken) == outcome(careful, broken)
        assert outcome(careful, broken)[0] == "error"


def test_json_hot_path_matches_where_orjson_and_json_differ() -> None:
    """Inputs orjson refuses or reads differently from ``json``: the outcome is still the careful path's."""
    origin = Origin("s", "a", "l", "m")
    good = encode_json(Batch("m", (Sample("x", 1.5, T), Sample("y", 3, T))), origin)
    variants = [
        good.replace(b"1.5", b"1" + b"0" * 30),  # an integer beyond 64 bits: orjson refuses, json reads it
        good.replace(b"1.5", b"1e999"),  # overflows to infinity
        good.replace(b"1.5", b"-0.0"),
        good.replace(b"1.5", b"0.000015"),  # written with an exponent by repr, in decimals by orjson
        good.replace(b"1.5", b"1e16"),
        good.replace(b'"x"', b'"\\ud800"'),  # an escaped lone surrogate: json accepts it, orjson does not
        good.replace(b'"x"', b'"\\u00e9t\\u00e9"'),
        b" " + good,  # leading whitespace
        good.replace(b'"schema":1', b'"schema":1,"schema":1'),  # a repeated key
        b'{"schema": 1, "site": "s", "area": "a", "line": "l", "machine": "m", "polled_at": 1, "samples": []}',
    ]
    for payload in variants:
        assert outcome(telemetry_lines, payload) == outcome(careful, payload), payload


def test_format_floats_is_repr() -> None:
    rnd = random.Random(20261122)
    makers: list[Callable[[], float]] = [
        lambda: float(struct.unpack("d", struct.pack("Q", rnd.getrandbits(64)))[0]),  # any bit pattern
        lambda: rnd.uniform(-1, 1) * 10.0 ** rnd.randint(-30, 30),
        lambda: round(rnd.uniform(-1000, 1000), rnd.randint(0, 8)),
        lambda: float(rnd.randint(-(10**17), 10**17)),
    ]
    numbers = [x for make in makers for x in (make() for _ in range(50_000)) if math.isfinite(x)]
    # Densely around the magnitudes where either writer changes notation.
    for edge in (1e-5, 1e-4, 1e15, 1e16, 1e17):
        numbers += [math.copysign(edge * rnd.uniform(0.9, 1.1), rnd.choice((-1, 1))) for _ in range(10_000)]
        numbers += [edge, math.nextafter(edge, 0), math.nextafter(edge, math.inf)]
    numbers += [0.0, -0.0, 5e-324, 1.7976931348623157e308, 0.1 + 0.2]
    assert format_floats(numbers) == [repr(x) for x in numbers]


LINE_ALPHABET = ["m", " ", ",", "=", '"', "\\", "1", "i", "u", ".", "e", "-", "t", "\t", "x", str(T)]


def test_line_protocol_fast_check_accepts_only_what_the_careful_check_accepts() -> None:
    rnd = random.Random(7)
    fast_accepted = 0
    for _ in range(50000):
        value = rnd.choice(["1", '"s"', '"a \\"b\\", c"', "t", "-1i", "2u", "1.5e3"])
        chars = list(f"m\\ x,a=b\\,c f={value},g=2 {T}")
        for _ in range(rnd.randint(1, 3)):
            position = rnd.randrange(len(chars) + 1)
            if rnd.random() < 0.5:
                chars.insert(position, rnd.choice(LINE_ALPHABET))
            elif chars:
                del chars[min(position, len(chars) - 1)]
        line = "".join(chars)
        simple = _SIMPLE_LINE.fullmatch(line)
        if simple is None or int(simple["time"]) < MIN_TIMESTAMP_NS:
            continue
        fast_accepted += 1
        _check_line(line)  # must not raise
    assert fast_accepted > 5000


def test_line_protocol_check_of_escaped_bridge_output_takes_the_fast_path() -> None:
    origin = Origin("plant 1", "press,shop", "line=2", "pump-1")
    batch = Batch("m", (Sample("mode", 'AUTO "2"', T), Sample("x", 1.5, T, Quality.UNCERTAIN, "a, b")), polled_at_ns=T)
    lines = encode_line_protocol(batch, origin).decode().split("\n")
    assert all(_SIMPLE_LINE.fullmatch(line) for line in lines)
    assert check_line_protocol("\n".join(lines).encode()) == lines


@pytest.mark.parametrize("digits", [20000])
def test_line_protocol_fast_check_is_linear_on_long_numbers(digits: int) -> None:
    # A quadratic regex would take minutes here; the pattern has no ambiguous repeats.
    with pytest.raises(PayloadError):
        check_line_protocol(f"m f={'1' * digits}x {T}".encode())
