"""Progress bars: drawn on a terminal, never in logs, pipes, the journal or JSON logs.

``edge-agent model train`` runs as a real subprocess, once with stderr on a pseudo-terminal and
once with stderr in a pipe; the bar must show in the first and leave no trace in the second.
"""

from __future__ import annotations

import io
import os
import pty
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from edge_agent.commands.model import featurise
from edge_agent.commands.progress import wanted
from models.features import WindowSpec, windows_from_arrays
from simulators.record import record
from simulators.scenario import parse_scenario
from tests.helpers.datasets import record as record_dataset
from tests.helpers.datasets import states


class Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


@pytest.mark.parametrize(
    ("env", "tty", "expected"),
    [
        ({}, True, True),
        ({}, False, False),
        ({"INVOCATION_ID": "abc"}, True, False),
        ({"JOURNAL_STREAM": "8:123"}, True, False),
        ({"EDGE_AGENT_LOG_FORMAT": "json"}, True, False),
        ({"EDGE_AGENT_NO_PROGRESS": "1"}, True, False),
        ({"EDGE_AGENT_NO_PROGRESS": "0"}, True, True),
    ],
)
def test_when_a_bar_is_drawn(env: dict[str, str], tty: bool, expected: bool) -> None:
    assert wanted(Terminal() if tty else io.StringIO(), env) is expected


def test_featurise_gives_the_windows_of_windows_from_arrays() -> None:
    d = record_dataset("pump", 61, "40m", [])
    spec = WindowSpec(60.0, 30.0)
    ours = featurise(d.time_s, d.values, spec, states(d))
    theirs = windows_from_arrays(d.time_s, d.values, spec, states(d))
    np.testing.assert_array_equal(ours.features, theirs.features)
    np.testing.assert_array_equal(ours.end_s, theirs.end_s)
    assert (ours.state, ours.skipped) == (theirs.state, theirs.skipped)


def train(csv: Path, out: Path, *, on_terminal: bool, extra: tuple[str, ...] = ()) -> tuple[int, str]:
    """Run ``edge-agent model train``; return its exit code and what it wrote to stderr."""
    argv = [sys.executable, "-m", "edge_agent", "model", "train", "--csv", str(csv), "--out", str(out), *extra]
    env = {
        k: v for k, v in os.environ.items() if k not in ("INVOCATION_ID", "JOURNAL_STREAM", "EDGE_AGENT_NO_PROGRESS")
    }
    env.pop("EDGE_AGENT_LOG_FORMAT", None)
    if not on_terminal:
        done = subprocess.run(argv, capture_output=True, env=env, timeout=120, check=False)
        return done.returncode, done.stderr.decode(errors="replace")
    master, slave = pty.openpty()
    with subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=slave, env=env) as proc:
        os.close(slave)
        chunks: list[bytes] = []
        while True:
            try:
                chunk = os.read(master, 4096)
            except OSError:  # the terminal closed: the process is gone
                break
            if not chunk:
                break
            chunks.append(chunk)
        code = proc.wait(timeout=120)
    os.close(master)
    return code, b"".join(chunks).decode(errors="replace")


@pytest.fixture(scope="module")
def csv(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("progress") / "healthy.csv"
    record(parse_scenario("seed: 62\nstep: 1s\nmachines: [pump-1]\n"), 3 * 3600, path)
    return path


def test_model_train_shows_a_bar_on_a_terminal_only(csv: Path, tmp_path: Path) -> None:
    code, shown = train(csv, tmp_path / "a.npz", on_terminal=True)
    assert code == 0, shown
    assert "windows" in shown
    assert "row" in shown, "the bar counts rows"
    code, piped = train(csv, tmp_path / "b.npz", on_terminal=False)
    assert code == 0, piped
    assert "\r" not in piped
    assert "windows" not in piped
    code, quiet = train(csv, tmp_path / "c.npz", on_terminal=True, extra=("--no-progress",))
    assert code == 0, quiet
    assert "windows" not in quiet
