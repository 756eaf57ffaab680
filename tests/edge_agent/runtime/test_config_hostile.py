"""One regression test per hostile-config finding: each failed (a traceback, a crash later, or an echoed secret)
before the loader and the sections were hardened."""

from __future__ import annotations

import os
import selectors
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from edge_agent.commands.cli import build_parser
from edge_agent.core.errors import ConfigError
from edge_agent.runtime.cleartext import cleartext_credentials
from edge_agent.runtime.loader import parse_config

MODBUS = """\
machines:
  - id: press-1
    type: modbus
    host: 127.0.0.1
    interval: 1s
    tags:
      - {name: pressure, address: 0, type: float32}
"""
OPCUA = """\
machines:
  - id: pump-1
    type: opcua
    endpoint: opc.tcp://127.0.0.1:4840/
    security: none
    interval: 1s
    tags:
      - {name: flow, node: "ns=2;s=flow"}
"""
INFLUX = "influxdb:\n  url: http://127.0.0.1:8086\n  org: o\n  bucket: b\n"


def problems_of(text: str) -> list[str]:
    with pytest.raises(ConfigError) as info:
        parse_config(text, "plant.yaml")
    for problem in info.value.problems:
        assert problem.startswith("line "), problem
    return info.value.problems


# Durations and numbers: finite, in a sane range.

DURATION_KEYS = [
    (OPCUA, "    interval: 1s\n", "    interval: {}\n", "machines[0].interval"),
    (OPCUA, "    interval: 1s\n", "    interval: 1s\n    timeout: {}\n", "machines[0].timeout"),
    (OPCUA, "    interval: 1s\n", "    interval: 1s\n    connect_timeout: {}\n", "machines[0].connect_timeout"),
    (OPCUA, "    interval: 1s\n", "    interval: 1s\n    max_age: {}\n", "machines[0].max_age"),
    (MODBUS, "    interval: 1s\n", "    interval: 1s\n    pause_after_connect: {}\n", "pause_after_connect"),
    (MODBUS + "mqtt:\n  keepalive: 30s\n", "keepalive: 30s", "keepalive: {}", "mqtt.keepalive"),
    (MODBUS + "mqtt:\n  connect_timeout: 5s\n", "connect_timeout: 5s", "connect_timeout: {}", "mqtt.connect_timeout"),
    (MODBUS + INFLUX + "  timeout: 5s\n", "timeout: 5s", "timeout: {}", "influxdb.timeout"),
    (MODBUS + "ingest:\n  flush_interval: 1s\n", "flush_interval: 1s", "flush_interval: {}", "ingest.flush_interval"),
    (MODBUS + "outbox:\n  max_age: 7d\n", "max_age: 7d", "max_age: {}", "outbox.max_age"),
    (MODBUS + "alerts:\n  cooldown: 30m\n", "cooldown: 30m", "cooldown: {}", "alerts.cooldown"),
]


@pytest.mark.parametrize("value", [".nan", ".inf", "-.inf", "nan", "inf", "1e308", "-1", str(10**30)])
@pytest.mark.parametrize(("text", "old", "new", "key"), DURATION_KEYS, ids=[k[3] for k in DURATION_KEYS])
def test_every_duration_refuses_nan_inf_huge_and_negative(text: str, old: str, new: str, key: str, value: str) -> None:
    problems = problems_of(text.replace(old, new.format(value)))
    name = key.rsplit(".", 1)[-1]  # range checks across keys report on the section, naming the key
    assert any(name in problem and "Fix:" in problem for problem in problems), problems


def test_nan_interval_no_longer_passes() -> None:
    [problem] = problems_of(OPCUA.replace("interval: 1s", "interval: nan"))
    assert "machines[0].interval" in problem
    assert "not a duration" in problem


def test_negative_mqtt_keepalive_is_a_config_error_not_a_crash_loop() -> None:
    [problem] = problems_of(MODBUS + "mqtt:\n  keepalive: -5\n")
    assert problem.startswith("line 9: mqtt.keepalive: Input should be greater than or equal to 1")


@pytest.mark.parametrize(
    ("extra", "key"),
    [
        ("    tags:\n      - {name: p, address: 0, type: float32, scale: .nan}\n", "scale"),
        ("    tags:\n      - {name: p, address: 0, type: float32, offset: .inf}\n", "offset"),
    ],
)
def test_modbus_scale_and_offset_are_finite(extra: str, key: str) -> None:
    text = MODBUS.split("    tags:\n", 1)[0] + extra
    [problem] = problems_of(text)
    assert f"tags[0].{key}: Input should be a finite number" in problem


@pytest.mark.parametrize(
    "section",
    [
        "alerts:\n  false_alarms_per_day: .inf\n",
        "alerts:\n  n: 1000000000000000000000\n",
        "alerts:\n  state: {signal: current, off_below: .nan, running_above: 8}\n",
        "outbox:\n  max_bytes: 100000000000000000000000000\n",
        "mqtt:\n  max_queued_messages: 1000000000000000000000000\n",
        "ingest:\n  batch_size: 1000000000000000000000000\n",
    ],
)
def test_numbers_without_an_upper_bound_now_have_one(section: str) -> None:
    [problem] = problems_of(MODBUS + section)
    assert "Fix:" in problem


# YAML bombs, loops, NUL bytes.


def test_billion_laughs_is_refused_at_its_line() -> None:
    lines = ['a0: &a0 ["lol", "lol", "lol", "lol", "lol", "lol", "lol", "lol", "lol"]']
    lines += [f"a{i}: &a{i} [{', '.join([f'*a{i - 1}'] * 9)}]" for i in range(1, 10)]
    [problem] = problems_of("\n".join(lines))
    assert problem.startswith("line 6, column ")
    assert "YAML bomb" in problem


def test_an_alias_inside_its_own_anchor_is_refused() -> None:
    [problem] = problems_of("machines: &m\n  - *m\n")
    assert problem.startswith("line 2, column 5: not valid YAML: alias *m is inside the value it refers to")


def test_shared_tag_lists_through_aliases_still_work() -> None:
    text = MODBUS.replace("    tags:\n", "    tags: &shared\n") + MODBUS.split("machines:\n")[1].replace(
        "press-1", "press-2"
    ).replace("    tags:\n      - {name: pressure, address: 0, type: float32}\n", "    tags: *shared\n")
    config = parse_config(text)
    assert [machine.tags[0].name for machine in config.machines] == ["pressure", "pressure"]


@pytest.mark.parametrize(
    ("text", "start"),
    [
        ("site:\n  name: a\x00b\n", "line 2, column 10: character U+0000 is not allowed"),
        ('site:\n  name: "a\\0b"\n', "line 2: site.name: the value holds a NUL character (U+0000)"),
        ('site:\n  name: "\\ud800"\n', "line 2: site.name: the value holds an unpaired surrogate (U+D800)"),
        ("site: " + "[" * 3000 + "]" * 3000, "line 1, column 70: not valid YAML: values are nested more than 64"),
        ("site: {name: 2024-13-45}\n", "line 1, column 14: not valid YAML: cannot read this value"),
        ("? [a]\n: b\n", "line 1, column 3: not valid YAML: a key is a list or mapping"),
    ],
)
def test_unreadable_yaml_is_located_never_a_traceback(text: str, start: str) -> None:
    [problem] = problems_of(text)
    assert problem.startswith(start), problem


# Secrets are never echoed; ${file:} only where a secret belongs.


def test_rejected_web_password_is_not_echoed() -> None:
    problems = problems_of("web:\n  host: 0.0.0.0\n  username: u\n  password: 12345678\n")
    assert "web.password: Input should be a valid string" in problems[0]
    assert "12345678" not in "\n".join(problems)


def test_file_reference_in_a_plain_key_is_refused_without_reading_it(tmp_path: Path) -> None:
    secret = tmp_path / "shadow"
    secret.write_text("root:$6$canary-hash:19000::::::\n")
    [problem] = problems_of(f"mqtt:\n  host: ${{file:{secret}}}\n")
    assert problem.startswith("line 2: mqtt.host: ${file:...} may only give a secret")
    assert "canary-hash" not in problem


def test_environment_value_in_a_numeric_key_is_not_echoed(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("EDGE_TEST_PORT", "hunter2-not-a-port")
    [problem] = problems_of(MODBUS + "mqtt:\n  port: ${EDGE_TEST_PORT}\n")
    assert problem.startswith("line 9: mqtt.port: Input should be a valid integer")
    assert "hunter2" not in problem


def test_environment_value_in_a_custom_message_is_hidden(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("EDGE_TEST_DEVICE", "ttyS0-secret-suffix")
    text = (
        "machines:\n  - {id: m, type: modbus, serial: {device: '${EDGE_TEST_DEVICE}'}, tags: [{name: t, address: 0}]}\n"
    )
    [problem] = problems_of(text)
    assert "ttyS0-secret-suffix" not in problem
    assert "[hidden]" in problem


# Credentials in URLs, and credentials that travel unencrypted.


def test_influxdb_url_with_userinfo_is_refused_without_echo() -> None:
    [problem] = problems_of(MODBUS + INFLUX.replace("http://", "http://admin:pa55word@"))
    assert problem.startswith("line 9: influxdb.url: the url holds a user name, password or token")
    assert "influxdb.token" in problem
    assert "pa55word" not in problem


def test_mqtt_host_with_userinfo_is_refused_without_echo() -> None:
    [problem] = problems_of(MODBUS + "mqtt:\n  host: agent:pa55word@broker\n")
    assert "mqtt.password" in problem
    assert "pa55word" not in problem


def test_cleartext_credentials_are_named_loopback_and_tls_are_not() -> None:
    remote = parse_config(
        MODBUS
        + "mqtt:\n  host: broker.plant.lan\n  username: agent\n  password: pw-canary\n"
        + INFLUX.replace("127.0.0.1", "db.plant.lan")
        + "  token: tok-canary\n"
    )
    mqtt_warning, influx_warning = cleartext_credentials(remote)
    assert mqtt_warning.startswith("mqtt.username and mqtt.password travel to broker.plant.lan:1883 without TLS")
    assert influx_warning.startswith("influxdb.token travel to db.plant.lan over plain http")
    assert "canary" not in mqtt_warning + influx_warning
    local = parse_config(MODBUS + "mqtt:\n  username: agent\n  password: pw\n" + INFLUX + "  token: tok\n")
    assert cleartext_credentials(local) == []
    tls = parse_config(MODBUS + "mqtt:\n  host: broker.plant.lan\n  password: pw\n  tls: {ca_file: /ca.pem}\n")
    assert cleartext_credentials(tls) == []


def test_ingest_warns_once_at_start(tmp_path: Path) -> None:
    config = tmp_path / "ingest.yaml"
    config.write_text(
        "mqtt:\n  host: 192.0.2.1\n  username: bridge\n  password: pw\n  connect_timeout: 1s\n"
        + INFLUX.replace("127.0.0.1", "192.0.2.1")
        + "  token: tok\n"
    )
    process = subprocess.Popen(
        [sys.executable, "-m", "edge_agent", "ingest", str(config)],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        env={**os.environ, "NO_COLOR": "1"},
    )
    output = ""
    try:
        assert process.stdout is not None
        with selectors.DefaultSelector() as selector:
            selector.register(process.stdout, selectors.EVENT_READ)
            deadline = time.monotonic() + 60
            while "over plain http" not in output or "without TLS" not in output:
                assert time.monotonic() < deadline, output
                if selector.select(timeout=1):
                    line = process.stdout.readline()
                    assert line, output
                    output += line
    finally:
        process.send_signal(signal.SIGTERM)
        rest, _ = process.communicate(timeout=60)
        output += rest
    assert output.count("without TLS") == 1, output
    assert output.count("over plain http") == 1, output


# demo's arguments: usage errors, not tracebacks.


@pytest.mark.parametrize(
    ("arguments", "reason"),
    [
        (["--web", "0.0.0.0:8080"], "0.0.0.0 can be reached from other computers"),
        (["--web", "nonsense"], "the port must be a number"),
        (["--web", "127.0.0.1:70000"], "the port must be a number"),
        (["--mqtt", "h:abc"], "the port must be a number from 1 to 65535"),
        (["--mqtt", "user@h:1883"], "no user@"),
        (["--mqtt", "::1:1883"], "IPv6 address in brackets"),
        (["--duration", "nan"], "a number of seconds"),
    ],
)
def test_demo_arguments_are_usage_errors(arguments: list[str], reason: str, capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exit_info:
        build_parser(extensions=False).parse_args(["demo", *arguments])
    assert exit_info.value.code == 2
    error = capsys.readouterr().err.strip().splitlines()[-1]
    assert error.startswith(f"edge-agent demo: error: argument {arguments[0]}: ")
    assert reason in error


def test_demo_addresses_parse() -> None:
    args = build_parser(extensions=False).parse_args(["demo", "--web", "8081", "--mqtt", "[::1]:1884"])
    assert (args.web, args.mqtt) == (("127.0.0.1", 8081), ("::1", 1884))
    args = build_parser(extensions=False).parse_args(["demo", "--mqtt", "broker"])
    assert (args.web, args.mqtt) == (("127.0.0.1", 8080), ("broker", 1883))


def test_demo_on_a_reachable_address_exits_2_without_traceback() -> None:
    result = subprocess.run(
        [sys.executable, "-m", "edge_agent", "demo", "--web", "0.0.0.0:8080"],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 2
    assert "Traceback" not in result.stderr
    assert "--web 127.0.0.1:8080" in result.stderr
