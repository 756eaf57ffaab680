"""Fuzz ``check-config`` with hostile mutations of config.example.yaml.

The promise under test: whatever the file holds, ``check-config`` answers ``OK`` or a
``ConfigError`` whose every problem starts with ``line N``, never a traceback, and no value of a
secret or of a ``${...}`` reference ever appears in what it prints. The mutations are seeded, so a
failure names a case that reproduces.
"""

from __future__ import annotations

import contextlib
import copy
import io
import math
import random
import re
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import yaml

from edge_agent.commands.cli import main as cli_main
from edge_agent.runtime.loader import CHECKER_FAILED

ROOT = Path(__file__).resolve().parents[3]
EXAMPLE = ROOT / "config.example.yaml"

FILE_CANARY = "file-canary-5d1e0b7f"
ENV_CANARY = "env-canary-93c2a4e1"
LITERAL_CANARY = "literal-canary-0a8f6c2d"
INT_CANARY = 86427531
CANARIES = (FILE_CANARY, ENV_CANARY, LITERAL_CANARY, str(INT_CANARY))
PROBLEM_LINE = re.compile(r"^  - line \d+(, column \d+)?: \S")

SECRET_KEYS = [
    ("mqtt", "password"),
    ("influxdb", "password"),
    ("influxdb", "token"),
    ("web", "password"),
    ("web", "token"),
    ("machines", 0, "password"),
]
NUMERIC_KEYS = [
    ("machines", 0, "interval"),
    ("machines", 0, "timeout"),
    ("machines", 0, "connect_timeout"),
    ("machines", 0, "max_age"),
    ("machines", 0, "max_nodes_per_read"),
    ("machines", 0, "tags", 0, "index"),
    ("machines", 1, "interval"),
    ("machines", 1, "port"),
    ("machines", 1, "unit_id"),
    ("machines", 1, "max_gap"),
    ("machines", 1, "request_timeout"),
    ("machines", 1, "pause_after_connect"),
    ("machines", 1, "pause_between_requests"),
    ("machines", 1, "tags", 0, "address"),
    ("machines", 1, "tags", 0, "scale"),
    ("machines", 1, "tags", 0, "offset"),
    ("mqtt", "port"),
    ("mqtt", "keepalive"),
    ("mqtt", "connect_timeout"),
    ("mqtt", "max_queued_messages"),
    ("mqtt", "qos"),
    ("influxdb", "timeout"),
    ("influxdb", "version"),
    ("ingest", "batch_size"),
    ("ingest", "flush_interval"),
    ("outbox", "max_bytes"),
    ("outbox", "max_age"),
    ("outbox", "max_in_flight"),
    ("web", "port"),
    ("alerts", "window"),
    ("alerts", "hop"),
    ("alerts", "min_fill"),
    ("alerts", "learn_after"),
    ("alerts", "false_alarms_per_day"),
    ("alerts", "k"),
    ("alerts", "n"),
    ("alerts", "clear_level"),
    ("alerts", "cooldown"),
    ("alerts", "queue_rows"),
    ("alerts", "retrain_every"),
    ("alerts", "keep_models"),
]
HOSTILE_NUMBERS: list[Any] = [
    math.nan,
    math.inf,
    -math.inf,
    -1,
    -5,
    0,
    1e308,
    -1e308,
    10**30,
    2**63,
    10**400,
    "nan",
    "inf",
    "-1s",
    "1e999",
    "1" * 400 + "s",
    "99999999d",
    True,
    None,
    [],
    {},
    "",
]
HOSTILE_TEXT: list[Any] = [
    "",
    " ",
    "x" * 5000,
    "a\x00b",
    "\ud800",
    "a\udfffb",
    "ü€😀",
    "line\nbreak",
    "\x1b[31mred",
    "${",
    "${}",
    "${not a name}",
    "${UNSET_FUZZ_VARIABLE}",
    "${UNSET_FUZZ_VARIABLE:-fallback}",
    "${file:/nonexistent/secret}",
    "${file:/dev/zero}",
    "${file:/}",
    "user:pass@host",
    "http://user:pass@host:8086",
    12,
    -1.5,
    math.nan,
    [1, 2],
    {"a": 1},
]


@dataclass
class Case:
    """One mutated config: its text, and whether a canary may legitimately appear on success."""

    name: str
    text: str


def _set(data: Any, path: tuple[Any, ...], value: Any) -> None:
    target = data
    for part in path[:-1]:
        if isinstance(part, int):
            target = target[part]
        else:
            target = target.setdefault(part, {}) if isinstance(target, dict) else target
    if isinstance(target, dict) or (isinstance(target, list) and isinstance(path[-1], int)):
        target[path[-1]] = value


def _leaves(data: Any, path: tuple[Any, ...] = ()) -> Iterator[tuple[Any, ...]]:
    if isinstance(data, dict):
        for key, value in data.items():
            yield from _leaves(value, (*path, key))
    elif isinstance(data, list):
        for index, value in enumerate(data):
            yield from _leaves(value, (*path, index))
    else:
        yield path


def _dump(data: Any) -> str:
    return yaml.safe_dump(data, allow_unicode=False, sort_keys=False, width=200)


def _bomb(levels: int) -> str:
    lines = ['lol0: &l0 ["lol", "lol", "lol", "lol", "lol", "lol", "lol", "lol", "lol"]']
    lines += [f"lol{i}: &l{i} [{', '.join([f'*l{i - 1}'] * 9)}]" for i in range(1, levels)]
    return "\n".join(lines) + "\n"


def _cases(secret_file: Path) -> list[Case]:
    rng = random.Random(20240518)
    base_text = EXAMPLE.read_text(encoding="utf-8")
    base = yaml.safe_load(base_text)
    base["web"] = {"host": "127.0.0.1", "port": 8080}
    base["alerts"] = {"window": "60s", "hop": "30s"}
    leaves = list(_leaves(base))
    references = [f"${{file:{secret_file}}}", "${FUZZ_ENV_CANARY}", f"prefix-${{file:{secret_file}}}"]
    cases: list[Case] = []

    def mutated(name: str, path: tuple[Any, ...], value: Any, extra: dict[tuple[Any, ...], Any] | None = None) -> None:
        data = copy.deepcopy(base)
        _set(data, path, value)
        for other, other_value in (extra or {}).items():
            _set(data, other, other_value)
        cases.append(Case(f"{name} {path}={value!r:.40}", _dump(data)))

    for index in range(90):  # a hostile number in a numeric or duration key
        path = NUMERIC_KEYS[index % len(NUMERIC_KEYS)]
        mutated("number", path, rng.choice(HOSTILE_NUMBERS))
    for _ in range(70):  # hostile text or type in any leaf of the example
        mutated("leaf", rng.choice(leaves), rng.choice(HOSTILE_TEXT + HOSTILE_NUMBERS))
    for path in SECRET_KEYS:  # secrets, literal and referenced, next to a mistake that fails validation
        for secret in (LITERAL_CANARY, INT_CANARY, *references):
            mutated("secret", path, secret, {("mqtt", "port"): "not-a-port", ("web", "host"): "0.0.0.0"})
        mutated("short secret", path, LITERAL_CANARY[:9], {("web", "username"): "operator"})
    for _ in range(40):  # references in keys that are not secrets: ${file:} refused, no value echoed
        mutated("reference", rng.choice(NUMERIC_KEYS + leaves), rng.choice(references))
    for path in [("influxdb", "url"), ("mqtt", "host"), ("machines", 0, "endpoint"), ("site", "name")]:
        mutated("userinfo", path, f"http://admin:{LITERAL_CANARY}@db.plant.lan:8086")
        mutated("userinfo", path, f"opc.tcp://admin:{LITERAL_CANARY}@10.0.0.5:4840/")
    raw: list[tuple[str, str]] = [
        ("bomb", _bomb(10)),
        ("bomb inside the example", base_text + "\n" + _bomb(12)),
        ("recursive alias", "machines: &m\n  - *m\n"),
        ("recursive mapping", "site: &s\n  name: *s\n"),
        ("merge into itself", "site: &s\n  <<: *s\n"),
        ("undefined alias", "site: *nothing\n"),
        ("deep flow", "site: " + "[" * 5000 + "]" * 5000 + "\n"),
        ("deep block", "".join("  " * i + f"k{i}:\n" for i in range(300)) + "  " * 300 + "v\n"),
        ("two documents", base_text + "\n---\nsite: {}\n"),
        ("python tag", "site: !!python/object/apply:os.system ['true']\n"),
        ("bad timestamp", "site: {name: 2024-13-45}\n"),
        ("huge int", "mqtt: {port: " + "9" * 5000 + "}\n"),
        ("list key", "? [a, b]\n: c\n"),
        ("mapping key", "? {a: b}\n: c\n"),
        ("unicode key", "sïte: {}\n"),
        ("escaped NUL key", '"a\\0b": 1\n'),
        ("escaped surrogate key", '"\\ud800": 1\n'),
        ("bom", "\ufeff" + base_text),
        ("only a scalar", "just text\n"),
        ("only a list", "- a\n- b\n"),
        ("empty", ""),
        ("tabs", base_text.replace("  ", "\t", 3)),
    ]
    for offset in range(12):  # raw NUL and control characters at random places of the example
        position = rng.randrange(len(base_text))
        character = rng.choice(["\x00", "\x07", "\x1b", "\ufffe", "\x85"])
        raw.append((f"raw {character!r} at {position}", base_text[:position] + character + base_text[position:]))
        cut = rng.randrange(len(base_text))
        raw.append((f"truncated at {cut} ({offset})", base_text[:cut]))
    cases += [Case(name, text) for name, text in raw]
    return cases


def _check_config_in_process(path: Path) -> tuple[int, str, str]:
    """``edge-agent check-config PATH`` in this process: exit code, stdout, stderr."""
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err), pytest.raises(SystemExit) as exit_info:
        cli_main(["check-config", str(path)])
    return int(exit_info.value.code or 0), out.getvalue(), err.getvalue()


def _assert_well_answered(case: str, path: Path, code: int, out: str, err: str) -> None:
    assert code in (0, 2), f"{case}: exit {code}\n{err}"
    assert "Traceback" not in out + err, case
    assert CHECKER_FAILED not in err, f"{case}: a validator crashed\n{err}"
    (out + err).encode("utf-8")  # a lone surrogate here would crash the real print
    for canary in CANARIES:
        if code == 0:
            assert canary not in out or canary == ENV_CANARY, f"{case}: {canary} printed\n{out}"
        else:
            assert canary not in err, f"{case}: {canary} echoed\n{err}"
    if code == 2:
        header, *problems = err.rstrip("\n").split("\n")
        assert header.startswith(f"error: {path}: "), f"{case}: {header}"
        assert problems, f"{case}: {err}"
        for problem in problems:
            assert PROBLEM_LINE.match(problem), f"{case}: problem without a line: {problem!r}"


@pytest.fixture
def secret_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    secret = tmp_path / "secret"
    secret.write_text(FILE_CANARY + "\n")
    monkeypatch.setenv("FUZZ_ENV_CANARY", ENV_CANARY)
    monkeypatch.delenv("UNSET_FUZZ_VARIABLE", raising=False)
    return secret


def test_check_config_survives_hostile_mutations(tmp_path: Path, secret_file: Path) -> None:
    cases = _cases(secret_file)
    assert len(cases) >= 200
    refused = 0
    for number, case in enumerate(cases):
        path = tmp_path / f"case-{number}.yaml"
        path.write_text(case.text, encoding="utf-8", errors="surrogatepass")
        code, out, err = _check_config_in_process(path)
        _assert_well_answered(case.name, path, code, out, err)
        refused += code == 2
    assert refused > len(cases) // 2, "most mutations are mistakes and must be refused"


def test_file_references_only_resolve_into_secrets(secret_file: Path) -> None:
    from edge_agent.core.errors import ConfigError
    from edge_agent.runtime.loader import parse_config

    config = parse_config(f"web:\n  username: operator\n  password: ${{file:{secret_file}}}\n", "ok.yaml")
    assert config.web is not None
    assert config.web.password is not None
    assert config.web.password.get_secret_value() == FILE_CANARY
    with pytest.raises(ConfigError) as refused:
        parse_config(f"mqtt:\n  host: ${{file:{secret_file}}}\n", "bad.yaml")
    [problem] = refused.value.problems
    assert problem.startswith("line 2: mqtt.host: ${file:...} may only give a secret")
    assert FILE_CANARY not in str(refused.value)


def test_invalid_utf8_and_oversized_files_are_located(tmp_path: Path) -> None:
    broken = tmp_path / "latin1.yaml"
    broken.write_bytes(b"site:\n  name: caf\xe9\n")
    code, _, err = _check_config_in_process(broken)
    assert code == 2
    assert "line 2, column 12: not UTF-8 text" in err
    zero = _check_config_in_process(Path("/dev/zero"))
    assert zero[0] == 2
    assert "line 1: the file is larger than" in zero[2]


SUBPROCESS_CASES = {
    "bomb": _bomb(10),
    "nul": "site:\n  name: a\x00b\n",
    "surrogate": 'site:\n  name: "\\ud800"\n',
    "secret": f"web:\n  host: 0.0.0.0\n  username: u\n  password: {INT_CANARY}\n",
    "nan": "machines:\n  - {id: m, type: modbus, host: h, interval: .nan, tags: [{name: t, address: 0}]}\n",
}


@pytest.mark.parametrize("name", sorted(SUBPROCESS_CASES))
def test_check_config_cli_in_a_real_process(tmp_path: Path, name: str) -> None:
    path = tmp_path / f"{name}.yaml"
    path.write_text(SUBPROCESS_CASES[name], encoding="utf-8")
    result = subprocess.run(
        [sys.executable, "-m", "edge_agent", "check-config", str(path)],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 2, result.stderr
    _assert_well_answered(name, path, result.returncode, result.stdout, result.stderr)
