"""edge_agent.commands.logs: coloured lines on a terminal, plain lines when piped, JSON under systemd."""

from __future__ import annotations

import io
import json
import logging
from collections.abc import Iterator

import pytest

from edge_agent.commands.logs import choose_format, setup_logging


class Tty(io.StringIO):
    def isatty(self) -> bool:
        return True


@pytest.fixture(autouse=True)
def clean_root(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """Give each test a root logger of its own and an environment without systemd's variables."""
    for name in ("JOURNAL_STREAM", "INVOCATION_ID", "NO_COLOR", "TERM", "EDGE_AGENT_LOG_FORMAT"):
        monkeypatch.delenv(name, raising=False)
    root = logging.getLogger()
    saved_handlers, saved_level = root.handlers[:], root.level
    root.handlers.clear()
    yield
    for handler in root.handlers:
        handler.close()
    root.handlers[:] = saved_handlers
    root.setLevel(saved_level)


def test_piped_output_is_plain_lines() -> None:
    out = io.StringIO()
    assert setup_logging("INFO", stream=out) == "plain"
    logging.getLogger("edge_agent.test").info("machine %s is up", "pump-1")
    logging.getLogger("edge_agent.test").debug("not shown at INFO")
    line = out.getvalue()
    assert line.count("\n") == 1
    assert "INFO    edge_agent.test: machine pump-1 is up" in line
    assert "\x1b[" not in line


def test_terminal_output_is_coloured() -> None:
    out = Tty()
    assert setup_logging("DEBUG", stream=out) == "colour"
    logging.getLogger("edge_agent.test").warning("outbox is %d %% full", 90)
    text = out.getvalue()
    assert "\x1b[33mWARNING\x1b[0m edge_agent.test: outbox is 90 % full" in text


@pytest.mark.parametrize(("name", "value"), [("NO_COLOR", "1"), ("TERM", "dumb")])
def test_no_colour_when_the_terminal_asks(monkeypatch: pytest.MonkeyPatch, name: str, value: str) -> None:
    monkeypatch.setenv(name, value)
    assert choose_format(Tty()) == "plain"


@pytest.mark.parametrize("variable", ["JOURNAL_STREAM", "INVOCATION_ID"])
def test_json_lines_under_systemd(monkeypatch: pytest.MonkeyPatch, variable: str) -> None:
    monkeypatch.setenv(variable, "8:12345")
    out = Tty()  # even if the stream claims to be a terminal
    assert setup_logging("INFO", stream=out) == "json"
    logging.getLogger("edge_agent.delivery.outbox").error(
        "dropped %d batch(es)", 3, extra={"machine": "pump-1", "dropped": 3, "since": object()}
    )
    lines = out.getvalue().splitlines()
    assert len(lines) == 1
    entry = json.loads(lines[0])
    assert entry["level"] == "ERROR"
    assert entry["logger"] == "edge_agent.delivery.outbox"
    assert entry["message"] == "dropped 3 batch(es)"
    assert entry["machine"] == "pump-1"
    assert entry["dropped"] == 3
    assert isinstance(entry["since"], str)  # not JSON: written as its str()
    assert entry["time"].endswith("+00:00")
    assert set(entry) == {"time", "level", "logger", "message", "machine", "dropped", "since"}


def test_json_when_asked_and_exceptions_are_one_line() -> None:
    out = io.StringIO()
    assert setup_logging("INFO", json_format=True, stream=out) == "json"
    try:
        raise ValueError("bad register")
    except ValueError:
        logging.getLogger("edge_agent").exception("poll failed")
    lines = out.getvalue().splitlines()
    assert len(lines) == 1
    entry = json.loads(lines[0])
    assert entry["message"] == "poll failed"
    assert "ValueError: bad register" in entry["exception"]


def test_human_lines_forced_under_systemd(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("INVOCATION_ID", "abc")
    assert setup_logging("INFO", json_format=False, stream=io.StringIO()) == "plain"


def test_level_and_noisy_libraries() -> None:
    setup_logging("warning", stream=io.StringIO())
    assert logging.getLogger().level == logging.WARNING
    assert logging.getLogger("asyncua").level == logging.ERROR
    setup_logging("DEBUG", stream=io.StringIO())
    assert logging.getLogger("asyncua").level == logging.INFO


@pytest.mark.parametrize(
    ("value", "expected"), [("json", "json"), ("PLAIN", "plain"), ("color", "colour"), ("", "plain")]
)
def test_format_variable(monkeypatch: pytest.MonkeyPatch, value: str, expected: str) -> None:
    monkeypatch.setenv("EDGE_AGENT_LOG_FORMAT", value)
    assert choose_format(io.StringIO()) == expected


def test_format_variable_overrides_systemd_but_not_the_caller(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("INVOCATION_ID", "abc")
    monkeypatch.setenv("EDGE_AGENT_LOG_FORMAT", "plain")
    assert choose_format(io.StringIO()) == "plain"
    assert choose_format(io.StringIO(), json_format=True) == "json"
