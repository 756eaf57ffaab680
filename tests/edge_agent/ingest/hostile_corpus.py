"""A corpus of hostile MQTT messages for the bridge, each with what must become of it.

Every case is published on its own machine's topic (``…/plant/hall 1/line-2/c07/telemetry``), so
its dead letter (if any) is found by topic. A case is either ``dead`` (dead-lettered, the reason
holding ``reason``) or ``written`` (these exact points of that machine are in InfluxDB, nothing else).
Good payloads come from the agent's own encoders; each hostile one breaks them in one way.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from edge_agent.core.origin import Origin
from edge_agent.core.payload_json import MAX_PAYLOAD_BYTES
from edge_agent.core.samples import Batch, Sample
from edge_agent.delivery.payloads import encode_json, encode_line_protocol
from tests.helpers.alert_events import SINCE_S, alert_event, score_message

T = 1_763_800_000_123_456_789
SITE, AREA, LINE = "plant", "hall 1", "line-2"


@dataclass(frozen=True)
class Case:
    name: str
    kind: str  # telemetry, alerts or scores: the last topic level
    payload: bytes
    reason: str | None  # a part of the dead letter's reason; None: written
    rows: list[dict[str, Any]] = field(default_factory=list)  # written: tag, value, value_str of each point
    area: str = AREA  # the topic's (and the expected point's) area


def origin(machine: str, area: str = AREA) -> Origin:
    return Origin(SITE, area, LINE, machine)


def good_json(machine: str, area: str = AREA) -> bytes:
    return encode_json(Batch(machine, (Sample("flow", 1.5, T), Sample("count", 7, T + 1))), origin(machine, area))


def message(machine: str, samples: list[dict[str, Any]], /, **identity: Any) -> bytes:
    body: dict[str, Any] = {"schema": 1, "site": SITE, "area": AREA, "line": LINE, "machine": machine}
    body.update({"polled_at": T, "samples": samples})
    body.update(identity)
    return json.dumps(body, separators=(",", ":")).encode()


def sample(tag: Any = "flow", value: Any = 1.5, t: Any = T, quality: Any = "good", **extra: Any) -> dict[str, Any]:
    return {"tag": tag, "t": t, "v": value, "q": quality, **extra}


def lp(machine: str, body: str = "tag=flow value=1.5", t: object = T, measurement: str = "telemetry") -> str:
    return f"{measurement},site={SITE},area=hall\\ 1,line={LINE},machine={machine},{body} {t}"


def alert_json(machine: str, **changes: Any) -> bytes:
    event = alert_event("raised", SINCE_S + 60, machine=machine)
    event.update(changes)
    return json.dumps(event).encode()


def score_json(machine: str, **changes: Any) -> bytes:
    score = score_message(SINCE_S + 60, 2.0, machine=machine)
    score.update(changes)
    return json.dumps(score).encode()


def deep(levels: int) -> str:
    return "[" * levels + "]" * levels


def flow(value: float | None = 1.5, tag: str = "flow", text: str | None = None) -> dict[str, Any]:
    return {"tag": tag, "value": value, "value_str": text}


Builder = Callable[[str], Case]


def corpus() -> list[Builder]:
    """Each builder takes the case's machine id and gives the case."""
    big_int = "9" * 5000
    cases: list[Builder] = [
        # --- nesting
        lambda m: Case("array nested 3000 deep (not JSON here)", "telemetry", deep(3000).encode(), "line protocol"),
        lambda m: Case(
            "object nested 3000 deep", "telemetry", ('{"a":' * 3000 + "1" + "}" * 3000).encode(), "nested more than"
        ),
        lambda m: Case(
            "value nested 3000 deep",
            "telemetry",
            message(m, [sample()]).replace(b'"v":1.5', f'"v":{deep(3000)}'.encode()),
            "nested more than",
        ),
        lambda m: Case(
            "ignored key nested 100 deep",
            "telemetry",
            message(m, [sample()], extra=json.loads(deep(100))),
            "nested more than",
        ),
        lambda m: Case(
            "nested 60 deep, within bounds",
            "telemetry",
            message(m, [sample()], extra=json.loads(deep(60))),
            None,
            [flow()],
        ),
        # --- lone surrogates (JSON escapes that are not UTF-8)
        lambda m: Case("surrogate in a tag", "telemetry", message(m, [sample(tag="\ud800")]), "lone surrogate"),
        lambda m: Case(
            "surrogate in a string value", "telemetry", message(m, [sample(value="a\udc00b")]), "lone surrogate"
        ),
        lambda m: Case(
            "surrogate in a reason",
            "telemetry",
            message(m, [sample(value=None, quality="bad", reason="\ud83d")]),
            "lone surrogate",
        ),
        lambda m: Case("surrogate in machine", "telemetry", message(m, [sample()], machine="\ud800"), "identity"),
        lambda m: Case(
            "surrogate in a unit (not written)", "telemetry", message(m, [sample(unit="\ud800")]), None, [flow()]
        ),
        # --- numbers
        lambda m: Case(
            "integer of 5000 digits", "telemetry", message(m, [sample()]).replace(b"1.5", big_int.encode()), "digits"
        ),
        lambda m: Case("integer beyond float", "telemetry", message(m, [sample(value=10**400)]), "float range"),
        lambda m: Case("timestamp beyond int64", "telemetry", message(m, [sample(t=2**63)]), "outside the range"),
        lambda m: Case("timestamp 10^30", "telemetry", message(m, [sample(t=10**30)]), "outside the range"),
        lambda m: Case("timestamp -10^25", "telemetry", message(m, [sample(t=-(10**25))]), "outside the range"),
        lambda m: Case(
            "polled_at 10^30 (not written)", "telemetry", message(m, [sample()], polled_at=10**30), None, [flow()]
        ),
        lambda m: Case(
            "NaN", "telemetry", message(m, [sample()]).replace(b'"v":1.5', b'"v":NaN'), "NaN is not allowed"
        ),
        lambda m: Case(
            "Infinity", "telemetry", message(m, [sample()]).replace(b'"v":1.5', b'"v":Infinity'), "Infinity is not"
        ),
        lambda m: Case(
            "-Infinity", "telemetry", message(m, [sample()]).replace(b'"v":1.5', b'"v":-Infinity'), "Infinity is not"
        ),
        lambda m: Case("1e999", "telemetry", message(m, [sample()]).replace(b'"v":1.5', b'"v":1e999'), "finite"),
        # --- broken JSON, wrong types
        lambda m: Case("truncated JSON", "telemetry", good_json(m)[:40], "not valid JSON"),
        lambda m: Case("empty object", "telemetry", b"{}", "unsupported schema None"),
        lambda m: Case("top-level array", "telemetry", b"[1, 2]", "line protocol, line 1"),
        lambda m: Case("schema as a string", "telemetry", message(m, [sample()], schema="1"), "unsupported schema"),
        lambda m: Case("samples not a list", "telemetry", message(m, [], samples={"a": 1}), "'samples' must be list"),
        lambda m: Case("sample not an object", "telemetry", message(m, [5]), "must be an object"),  # type: ignore[list-item]
        lambda m: Case("t a string", "telemetry", message(m, [sample(t="yesterday")]), "'t' must be int"),
        lambda m: Case("t a float", "telemetry", message(m, [sample(t=1.5e18)]), "'t' must be int"),
        lambda m: Case("t a boolean", "telemetry", message(m, [sample(t=True)]), "'t' must be int"),
        lambda m: Case("v an object", "telemetry", message(m, [sample(value={"a": 1})]), "'v' must be a number"),
        lambda m: Case("unknown quality", "telemetry", message(m, [sample(quality="great")]), "q must be good"),
        lambda m: Case("good without a value", "telemetry", message(m, [sample(value=None)]), "needs a value"),
        lambda m: Case("tag a number", "telemetry", message(m, [sample(tag=5)]), "'tag' must be str"),
        lambda m: Case("machine a number", "telemetry", message(m, [sample()], machine=5), "'machine' must be str"),
        lambda m: Case("not UTF-8", "telemetry", good_json(m).replace(b"flow", b"fl\xffow"), "not valid JSON"),
        lambda m: Case(
            "over 4 MiB of JSON",
            "telemetry",
            message(m, [sample(value=None, quality="bad", reason="x" * MAX_PAYLOAD_BYTES)]),
            "exceeds the 4194304-byte limit",
        ),
        # --- injection characters in every identifier of JSON telemetry
        lambda m: Case(
            "newline in a tag",
            "telemetry",
            message(m, [sample(tag=f"flow\nalerts,site={SITE},machine=x active=true {T}")]),
            "U+000A",
        ),
        lambda m: Case("carriage return in a tag", "telemetry", message(m, [sample(tag="flow\rx")]), "U+000D"),
        lambda m: Case("NUL in a tag", "telemetry", message(m, [sample(tag="flow\x00x")]), "U+0000"),
        lambda m: Case("tab in a tag", "telemetry", message(m, [sample(tag="flow\tx")]), "U+0009"),
        lambda m: Case("'#' leading a tag", "telemetry", message(m, [sample(tag="#flow")]), "starts with '#'"),
        lambda m: Case("empty tag", "telemetry", message(m, [sample(tag="")]), "is empty"),
        lambda m: Case("tag of 2000 characters", "telemetry", message(m, [sample(tag="x" * 2000)]), "characters long"),
        lambda m: Case(
            "escapable tag (comma, equals, space)",
            "telemetry",
            message(m, [sample(tag="a b,c=d")]),
            None,
            [flow(tag="a b,c=d")],
        ),
        lambda m: Case("backslash in a tag", "telemetry", message(m, [sample(tag="a\\b")]), "backslash"),
        lambda m: Case("LP backslash in a tag", "telemetry", lp(m, "tag=a\\\\b value=1.5").encode(), "backslash"),
        lambda m: Case("unicode tag", "telemetry", message(m, [sample(tag="débit-°C")]), None, [flow(tag="débit-°C")]),
        lambda m: Case(
            "string value with quotes and a backslash",
            "telemetry",
            message(m, [sample(value='say "hi"\\')]),
            None,
            [flow(value=None, text='say "hi"\\')],
        ),
        # --- forged identity
        lambda m: Case("machine forged", "telemetry", message(m, [sample()], machine="victim"), "identity"),
        lambda m: Case("site forged", "telemetry", message(m, [sample()], site="other"), "identity"),
        lambda m: Case("area forged", "telemetry", message(m, [sample()], area="hall 2"), "identity"),
        lambda m: Case("line forged", "telemetry", message(m, [sample()], line="line-3"), "identity"),
        lambda m: Case(
            "machine with a newline", "telemetry", message(m, [sample()], machine=f"{m}\nalerts"), "identity"
        ),
        # --- line protocol
        lambda m: Case(
            "LP to alerts",
            "telemetry",
            lp(m, "severity=alarm,event=x active=true", T, "alerts").encode(),
            "not one this bridge passes",
        ),
        lambda m: Case(
            "LP to anomaly_score",
            "telemetry",
            lp(m, "detector=x score=1", T, "anomaly_score").encode(),
            "not one this bridge passes",
        ),
        lambda m: Case("LP machine forged", "telemetry", lp("victim").encode(), "identity does not match"),
        lambda m: Case(
            "LP without identity", "telemetry", f"telemetry,tag=flow value=1.5 {T}".encode(), "'site' is missing"
        ),
        lambda m: Case(
            "LP machine twice", "telemetry", lp(m, "machine=victim,tag=flow value=1.5").encode(), "appears twice"
        ),
        lambda m: Case("LP second line forged", "telemetry", f"{lp(m)}\n{lp('victim')}".encode(), "line 2: identity"),
        lambda m: Case("LP timestamp of 4400 digits", "telemetry", lp(m, t="1" * 4400).encode(), "at most 19 digits"),
        lambda m: Case("LP timestamp beyond int64", "telemetry", lp(m, t=2**63).encode(), "beyond the year 2262"),
        lambda m: Case(
            "LP integer beyond int64", "telemetry", lp(m, "tag=flow value=99999999999999999999i").encode(), "beyond"
        ),
        lambda m: Case("LP float 1e999", "telemetry", lp(m, "tag=flow value=1e999").encode(), "not a finite double"),
        lambda m: Case("LP NUL in a tag", "telemetry", lp(m, "tag=fl\x00ow value=1.5").encode(), "U+0000"),
        lambda m: Case("LP CR in a tag", "telemetry", lp(m, "tag=fl\row value=1.5").encode(), "U+000D"),
        lambda m: Case(
            "LP escaped newline", "telemetry", (lp(m, "tag=flow\\") + f"\nalerts x=1 {T}").encode(), "line 1"
        ),
        lambda m: Case("LP measurement '#'", "telemetry", f"#telemetry,machine={m} value=1 {T}".encode(), "empty"),
        lambda m: Case("LP '#' leading a tag", "telemetry", lp(m, "tag=#flow value=1.5").encode(), "starts with '#'"),
        lambda m: Case("LP empty tag value", "telemetry", lp(m, "tag= value=1.5").encode(), "not key=value"),
        lambda m: Case(
            "LP unicode digits", "telemetry", lp(m, "tag=flow value=\u0661\u0662i").encode(), "not a number"
        ),
        lambda m: Case("LP surrogate bytes", "telemetry", lp(m).encode() + b"\xed\xa0\x80", "not valid UTF-8"),
        lambda m: Case("LP over 4 MiB", "telemetry", (lp(m) + "\n#" + "x" * MAX_PAYLOAD_BYTES).encode(), "exceeds the"),
        lambda m: Case(
            "LP from the agent's encoder",
            "telemetry",
            encode_line_protocol(Batch(m, (Sample("flow", 1.5, T), Sample("mode", "AUTO", T))), origin(m)),
            None,
            [flow(), flow(None, "mode", "AUTO")],
        ),
        lambda m: Case(
            "LP with CRLF, comments and blank lines",
            "telemetry",
            f"# a comment\r\n\r\n{lp(m)}\r\n".encode(),
            None,
            [flow()],
        ),
        # --- alert events and scores
        lambda m: Case("alert machine forged", "alerts", alert_json("victim"), "identity"),
        lambda m: Case("alert severity with a newline", "alerts", alert_json(m, severity="alarm\nx"), "line breaks"),
        lambda m: Case("alert event with CR", "alerts", alert_json(m, event="raised\r"), "U+000D"),
        lambda m: Case("alert event '#'", "alerts", alert_json(m, event="#raised"), "starts with '#'"),
        lambda m: Case("alert nested 3000 deep", "alerts", deep(3000).encode(), "nested more than"),
        lambda m: Case("alert surrogate in summary", "alerts", alert_json(m, summary="\ud800"), "lone surrogate"),
        lambda m: Case("score detector with NUL", "scores", score_json(m, detector="p\x00ca"), "U+0000"),
        lambda m: Case("score site forged", "scores", score_json(m, site="other"), "identity"),
        # --- the rest
        lambda m: Case("whitespace only", "telemetry", b" \n\t ", "payload is empty"),
        lambda m: Case("byte order mark", "telemetry", b"\xef\xbb\xbf" + good_json(m), "line protocol"),
        lambda m: Case(
            "duplicate machine key, the last one right",
            "telemetry",
            good_json(m).replace(b'"machine":', b'"machine":"victim","machine":', 1),
            None,
            [flow(), {"tag": "count", "value": 7.0, "value_str": None}],
        ),
        lambda m: Case(
            "escapable area in topic and payload",
            "telemetry",
            good_json(m, "hall,1=b"),
            None,
            [flow(), {"tag": "count", "value": 7.0, "value_str": None}],
            area="hall,1=b",
        ),
        lambda m: Case(
            "backslash at the end of the area in topic and payload",
            "telemetry",
            message(m, [sample()], area="hall\\"),
            "backslash",
            area="hall\\",
        ),
    ]
    return cases


def good_rows() -> list[dict[str, Any]]:
    """The points of ``good_json``."""
    return [flow(), {"tag": "count", "value": 7.0, "value_str": None}]
