"""edge_agent.alerts.events: alert events and scores as line protocol, without servers."""

from __future__ import annotations

import json
import math
from datetime import UTC, datetime
from typing import Any

import pytest

from edge_agent.alerts.events import (
    alert_event_to_line,
    alert_payload_to_lines,
    iso_to_ns,
    score_payload_to_lines,
    score_to_line,
    signals_text,
)
from edge_agent.core.errors import PayloadError
from edge_agent.ingest.lineproto import check_line_protocol
from tests.helpers.alert_events import SINCE_S, alert_event, score_message

AT_S = SINCE_S + 120


def split(line: str) -> tuple[str, dict[str, str], str]:
    """(series, fields as raw text, timestamp) of one line the test built itself (no spaces in field names)."""
    assert check_line_protocol(line.encode()) == [line]  # structurally valid line protocol
    series, rest = _series_split(line)
    fields_text, timestamp = rest.rsplit(" ", 1)
    fields: dict[str, str] = {}
    for part in _split_fields(fields_text):
        key, value = part.split("=", 1)
        fields[key] = value
    return series, fields, timestamp


def _series_split(line: str) -> tuple[str, str]:
    index = -1
    while True:
        index = line.index(" ", index + 1)
        if line[index - 1] != "\\":
            return line[:index], line[index + 1 :]


def _split_fields(text: str) -> list[str]:
    parts, current, quoted, escaped = [], "", False, False
    for char in text:
        if escaped:
            current += char
            escaped = False
        elif char == "\\":
            current += char
            escaped = True
        elif char == '"':
            current += char
            quoted = not quoted
        elif char == "," and not quoted:
            parts.append(current)
            current = ""
        else:
            current += char
    return [*parts, current]


def test_raised_alert_is_one_point_with_identity_tags_and_its_own_time() -> None:
    event = alert_event("raised", AT_S)
    series, fields, timestamp = split(alert_event_to_line(event))
    assert series == "alerts,site=plant,area=hall\\ 1,line=line-2,machine=pump-1,severity=alarm,event=raised"
    assert int(timestamp) == int(datetime.fromisoformat(event["at"]).timestamp()) * 10**9
    assert fields["alert_id"] == f'"{event["alert_id"]}"'
    assert fields["active"] == "true"
    assert fields["acknowledged"] == "false"
    assert float(fields["level"]) == event["level"]
    assert float(fields["peak_level"]) == event["peak_level"]
    assert float(fields["score"]) == event["score"]
    assert float(fields["threshold"]) == event["threshold"]
    assert fields["model_version"] == f'"{event["model_version"]}"'
    assert fields["signals"] == '"vibration_rms up 63.1 %, motor_temperature up 30.4 %, flow normal 6.5 %"'
    assert fields["hint"].startswith('"bearing wear or lack of lubrication; check bearing lubrication')
    assert json.loads(fields["summary"]) == event["summary"]
    assert "acknowledged_by" not in fields


def test_acknowledged_alert_leaves_out_null_fields() -> None:
    event = alert_event("acknowledged", AT_S + 30, acknowledged=True, scored=False)
    _, fields, _ = split(alert_event_to_line(event))
    assert "score" not in fields
    assert "threshold" not in fields
    assert fields["acknowledged"] == "true"
    assert fields["acknowledged_by"] == '"ana"'


def test_same_event_gives_the_same_point_and_numbers_are_always_floats() -> None:
    event = alert_event("cleared", AT_S + 600)
    assert alert_event_to_line(event) == alert_event_to_line(json.loads(json.dumps(event)))
    event["level"] = 0  # an integer in JSON must still be a float field (no field type conflict later)
    _, fields, _ = split(alert_event_to_line(event))
    assert fields["level"] == "0.0"
    assert fields["active"] == "false"


def test_text_is_escaped() -> None:
    event = alert_event("raised", AT_S, machine='press "A", bay=2')
    event["summary"] = 'line one\nsaid "hot" \\ done'
    line = alert_event_to_line(event)
    assert "\n" not in line
    assert 'machine=press\\ "A"\\,\\ bay\\=2' in line
    _series, fields, _ = split(line)
    assert json.loads(fields["summary"]) == event["summary"]


def test_score_is_one_point() -> None:
    message = score_message(AT_S, 2.0, threshold=4.0)
    series, fields, timestamp = split(score_to_line(message))
    assert series == "anomaly_score,site=plant,area=hall\\ 1,line=line-2,machine=pump-1,detector=pca"
    assert fields == {
        "score": "2.0",
        "threshold": "4.0",
        "level": "0.5",
        "operating_state": '"running"',
        "model_version": f'"{message["model_version"]}"',
    }
    assert int(timestamp) == iso_to_ns(message["at"])
    message["operating_state"] = None
    assert "operating_state" not in split(score_to_line(message))[1]


def test_iso_times_to_nanoseconds() -> None:
    assert iso_to_ns("1970-01-01T00:00:00Z") == 0
    assert iso_to_ns("2026-01-05T14:15:31.123456789Z") == 1_767_622_531_123_456_789
    assert iso_to_ns("2026-01-05T15:15:31.5+01:00") == 1_767_622_531_500_000_000
    expected = int(datetime(2026, 1, 5, 14, 15, 31, tzinfo=UTC).timestamp()) * 10**9
    assert iso_to_ns("2026-01-05T14:15:31Z") == expected


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"schema": 2}, "unsupported schema 2"),
        ({"at": "2026-01-05T14:15:31"}, "a zone is required"),
        ({"at": 1767622531}, "'at' must be an ISO 8601 time string"),
        ({"at": "2999-01-01T00:00:00Z"}, "outside the range InfluxDB can store"),
        ({"at": "2026-02-30T00:00:00Z"}, "not a valid time"),
        ({"level": "high"}, "'level' must be a number, got str"),
        ({"level": True}, "'level' must be a number, got bool"),
        ({"peak_level": math.inf}, "'peak_level' is inf"),
        ({"active": "yes"}, "'active' must be true or false"),
        ({"severity": ""}, "'severity' must be a non-empty string"),
        ({"machine": None}, "'machine' must be a string, got null"),
        ({"signals": "vibration"}, "'signals' must be a list"),
        ({"signals": [{"percent": 3}]}, "signals[0] must be an object"),
        ({"hint": "grease it"}, "'hint' must be an object or null"),
    ],
)
def test_bad_alert_events_say_what_is_wrong(change: dict[str, Any], message: str) -> None:
    event = alert_event("raised", AT_S)
    event.update(change)
    with pytest.raises(PayloadError) as caught:
        alert_event_to_line(event)
    assert message in str(caught.value)


def test_missing_keys_are_named() -> None:
    event = alert_event("raised", AT_S)
    del event["alert_id"]
    with pytest.raises(PayloadError, match="missing key 'alert_id'"):
        alert_event_to_line(event)
    score = score_message(AT_S, 1.0)
    del score["detector"]
    with pytest.raises(PayloadError, match="missing key 'detector'"):
        score_to_line(score)


def test_payloads_are_checked_as_json() -> None:
    assert alert_payload_to_lines(json.dumps(alert_event("raised", AT_S)).encode())[0].startswith("alerts,")
    assert score_payload_to_lines(json.dumps(score_message(AT_S, 1.0)).encode())[0].startswith("anomaly_score,")
    with pytest.raises(PayloadError, match="not valid JSON"):
        alert_payload_to_lines(b"{nope")
    with pytest.raises(PayloadError, match="NaN is not allowed"):
        score_payload_to_lines(json.dumps(score_message(AT_S, math.nan)).encode())
    with pytest.raises(PayloadError, match="top level must be a JSON object"):
        score_payload_to_lines(b"[1, 2]")


def test_signals_text_keeps_the_leading_signals() -> None:
    signals = [{"signal": f"s{i}", "percent": 10.0 * (5 - i), "pattern": "up"} for i in range(5)]
    assert signals_text(signals) == "s0 up 50 %, s1 up 40 %, s2 up 30 %"
    assert signals_text([]) == ""
