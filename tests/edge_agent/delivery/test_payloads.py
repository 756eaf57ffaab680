"""Telemetry payloads: exact round trips, and every malformed message named precisely."""

from __future__ import annotations

import json

import pytest

from edge_agent.core.errors import PayloadError
from edge_agent.core.origin import Origin
from edge_agent.core.samples import Batch, Quality, Sample
from edge_agent.delivery.payloads import decode_json, encode_json, encode_line_protocol, to_line_protocol

ORIGIN = Origin("site a", "hall,1", "line=2", "pump-1")
T = 1_763_800_000_123_456_789


def batch(*samples: Sample) -> Batch:
    return Batch("pump-1", samples, polled_at_ns=T)


def test_json_round_trip_is_exact() -> None:
    original = batch(
        Sample("flow", 0.1 + 0.2, T, unit="m3/h"),
        Sample("count", 2**53 + 1, T + 1),
        Sample("running", True, T + 2),
        Sample("mode", 'auto "eco"', T + 3),
        Sample.bad("pressure", "Modbus exception 2", T + 4),
        Sample("temp", 20.5, T + 5, Quality.UNCERTAIN, "sensor not calibrated"),
    )
    decoded = decode_json(encode_json(original, ORIGIN))
    assert decoded.origin == ORIGIN
    assert decoded.polled_at_ns == T
    assert decoded.samples == original.samples


def test_non_finite_values_become_bad_samples_not_invalid_json() -> None:
    payload = encode_json(batch(Sample("flow", float("nan"), T), Sample("p", float("inf"), T)), ORIGIN)
    decoded = decode_json(payload)
    assert [s.quality for s in decoded.samples] == [Quality.BAD, Quality.BAD]
    assert all("not a finite number" in (s.reason or "") for s in decoded.samples)


def test_line_protocol_escapes_and_keeps_full_precision() -> None:
    sample = Sample("flow rate", 0.1 + 0.2, T)
    [line] = encode_line_protocol(batch(sample), ORIGIN).decode().splitlines()
    assert line == (
        "telemetry,site=site\\ a,area=hall\\,1,line=line\\=2,machine=pump-1,tag=flow\\ rate "
        f'quality="good",value=0.30000000000000004 {T}'
    )


def test_line_protocol_fields_by_value_type() -> None:
    lines = to_line_protocol(
        decode_json(
            encode_json(batch(Sample("on", False, T), Sample("name", 'a"b', T), Sample.bad("x", "timeout", T)), ORIGIN)
        )
    )
    assert "value_bool=false" in lines[0]
    assert 'value_str="a\\"b"' in lines[1]
    assert 'quality="bad",reason="timeout"' in lines[2]
    assert "value=" not in lines[2]


def good_message() -> dict[str, object]:
    message: dict[str, object] = json.loads(encode_json(batch(Sample("flow", 1.5, T)), ORIGIN))
    return message


@pytest.mark.parametrize(
    ("mutate", "reason"),
    [
        (lambda m: m.pop("machine"), "missing key 'machine'"),
        (lambda m: m.update(schema=2), "unsupported schema 2"),
        (lambda m: m.update(polled_at="yesterday"), "'polled_at' must be int"),
        (lambda m: m.update(polled_at=True), "'polled_at' must be int"),
        (lambda m: m.update(samples={}), "'samples' must be list"),
        (lambda m: m["samples"][0].update(q="great"), "q must be good, uncertain or bad"),
        (lambda m: m["samples"][0].update(v=None), "a good sample needs a value"),
        (lambda m: m["samples"][0].update(v=[1]), "'v' must be a number"),
        (lambda m: m["samples"][0].pop("t"), "samples[0]: missing key 't'"),
    ],
)
def test_malformed_messages_name_the_problem(mutate: object, reason: str) -> None:
    message = good_message()
    mutate(message)  # type: ignore[operator]
    with pytest.raises(PayloadError, match=reason.replace("[", r"\[").replace("]", r"\]")):
        decode_json(json.dumps(message).encode())


@pytest.mark.parametrize(
    ("payload", "reason"),
    [
        (b"{not json", "not valid JSON"),
        (b"\xff\xfe", "not valid JSON"),
        (b'"just a string"', "must be a JSON object"),
        (b'{"schema": 1, "v": NaN}', "NaN is not allowed"),
    ],
)
def test_unparseable_payloads(payload: bytes, reason: str) -> None:
    with pytest.raises(PayloadError, match=reason):
        decode_json(payload)


def test_overflowing_number_is_refused() -> None:
    payload = encode_json(batch(Sample("flow", 1.5, T)), ORIGIN).replace(b'"v":1.5', b'"v":1e999')
    with pytest.raises(PayloadError, match="finite"):
        decode_json(payload)


def test_huge_payload_is_refused_before_parsing() -> None:
    with pytest.raises(PayloadError, match="exceeds"):
        decode_json(b" " * (5 * 1024 * 1024))


def test_topic_layout() -> None:
    assert Origin("s", "a", "l", "m").topic("edge", "telemetry") == "edge/s/a/l/m/telemetry"
