"""The bridge's pure parts, no sockets: the light line-protocol check (what InfluxDB accepts must
pass; what would be lost or duplicated is refused saying which line and why), payload dispatch,
problem kinds for log dedup, and the retry backoff."""

from __future__ import annotations

import pytest

from edge_agent.core.backoff import Backoff
from edge_agent.core.errors import PayloadError
from edge_agent.core.origin import Origin
from edge_agent.core.problems import problem_kind
from edge_agent.core.samples import Batch, Sample
from edge_agent.delivery.payloads import encode_line_protocol
from edge_agent.ingest.lineproto import check_line_protocol
from edge_agent.ingest.parsing import parse_payload

T = "1763800000000000000"


@pytest.mark.parametrize(
    "line",
    [
        f"m f=1 {T}",
        f"m,t=a f=1.5,g=-2e-3,h=.5 {T}",
        f"m f=1i,g=-7i,u=3u {T}",
        f"m f=t,g=FALSE,h=true {T}",
        f'm f="with spaces, commas and = signs",g="esc \\"quote\\"" {T}',
        f"my\\ measurement,tag\\ key=tag\\,value,k=v\\=x field\\ key=1 {T}",
        f'telemetry,site=s,area=a,line=l,machine=m,tag=t quality="good",value=12.5 {T}',
    ],
)
def test_valid_lines_pass_unchanged(line: str) -> None:
    assert check_line_protocol(line.encode()) == [line]


def test_blank_lines_comments_and_crlf_are_skipped() -> None:
    payload = f"# a comment\r\nm f=1 {T}\r\n\n  \nm f=2 {T}\n".encode()
    assert check_line_protocol(payload) == [f"m f=1 {T}", f"m f=2 {T}"]


@pytest.mark.parametrize(
    ("payload", "reason"),
    [
        (b"", "empty"),
        (b"# only a comment", "empty"),
        (b"m f=1", "no timestamp"),
        (b"m f=1 1763800000", "looks like seconds"),
        (b"m f=1 17638e9", "not an integer"),
        (f"m {T}".encode(), "at least one field"),
        (f",t=a f=1 {T}".encode(), "measurement name is empty"),
        (f"m,t f=1 {T}".encode(), "tag 't' is not key=value"),
        (f"m f= {T}".encode(), "not key=value"),
        (f"m f=abc {T}".encode(), "not a number, boolean or quoted string"),
        (f'm f="open {T}'.encode(), "no closing double quote"),
        (f"m f=1 {T} extra".encode(), "space-separated parts"),
        (b"\xff\xfe", "not valid UTF-8"),
        (b'"a bare JSON string"', "space-separated parts"),
    ],
)
def test_invalid_payloads_are_refused_with_the_reason(payload: bytes, reason: str) -> None:
    with pytest.raises(PayloadError, match=reason):
        check_line_protocol(payload)


def test_the_error_names_the_line() -> None:
    with pytest.raises(PayloadError, match="line 2:"):
        check_line_protocol(f"m f=1 {T}\nm f=1".encode())


def test_parse_payload_dispatches_on_the_first_byte() -> None:
    origin = Origin("s", "a", "l", "m")
    batch = Batch("m", (Sample("x", 1.5, int(T)),))
    lines = check_line_protocol(encode_line_protocol(batch, origin))
    assert parse_payload(encode_line_protocol(batch, origin)) == lines
    with pytest.raises(PayloadError, match="not valid JSON"):
        parse_payload(b'  {"schema": 1,')


def test_problem_kinds_group_messages_that_differ_only_in_particulars() -> None:
    assert problem_kind("samples[3]: missing key 'tag'") == problem_kind("samples[7]: missing key 'v'")
    assert problem_kind("unsupported schema 2; this version reads schema 1") != problem_kind("not valid JSON: x")


def test_backoff_doubles_up_to_the_cap_with_jitter_and_never_overflows() -> None:
    for attempt, ceiling in [(0, 0.5), (1, 1.0), (2, 2.0), (6, 30.0), (5000, 30.0)]:
        delays = [_delay_after(attempt, 0.5, 30.0) for _ in range(50)]
        assert all(ceiling * 0.5 <= d <= ceiling for d in delays), (attempt, delays)
        assert len(set(delays)) > 1  # jittered


def _delay_after(failures: int, initial: float, cap: float) -> float:
    """The delay the bridge's write loop waits after ``failures`` + 1 failed attempts in a row."""
    backoff = Backoff(initial, cap)
    for _ in range(failures):
        backoff.next_delay()
    return backoff.next_delay()
