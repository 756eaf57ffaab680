"""docs/tutorial.md works as written: every command in its ``sh`` boxes is run, its effect checked.

The commands are taken from the document itself, so an edited command is tested as edited. Each
one needs a step below (in document order) or an entry in ``COVERED_ELSEWHERE``; a new command
in the tutorial without either fails ``test_every_command_is_covered``.

The tutorial uses the simulator's default ports (4840, 5020, 5021), as a student would; the test
fails with a clear message if something else holds them instead of picking other ports, since
other ports would no longer test the commands as written.
"""

from __future__ import annotations

import re
import shlex
import signal
import socket
import subprocess
import sys
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from tests.helpers.waiting import wait_until_sync

ROOT = Path(__file__).parents[2]
TUTORIAL = ROOT / "docs" / "tutorial.md"
DEFAULT_PORTS = {4840: "OPC UA", 5020: "Modbus TCP", 5021: "edge-sim control"}

SIM_RUN = ".venv/bin/edge-sim run"
ONCE = ".venv/bin/edge-agent run config.example.yaml --once"
FAULTS = ".venv/bin/edge-sim faults"
INJECT_BEARING = ".venv/bin/edge-sim inject pump-1 bearing_wear --severity 1 --progression sudden"
INJECT_IMBALANCE = ".venv/bin/edge-sim inject pump-1 imbalance --progression sudden"
CLEAR = ".venv/bin/edge-sim inject pump-1 --clear"
TYPO = ".venv/bin/edge-sim inject pump-1 wobble"

COVERED_ELSEWHERE = {
    "./scripts/demo": "tests/e2e/test_demo.py runs `edge-agent demo` (what scripts/demo execs): its values, "
    "and through the page's API the models ready, an injected fault's alert and its clearing; "
    "tests/edge_agent/web/ cover the page's learning, alert and acknowledge in a browser",
}

HEALTHY = 3.0  # mm/s: the healthy pump runs at about 1.2
FAULTY = 4.0  # mm/s: bearing wear about 10, imbalance about 7


@dataclass
class Tutorial:
    """What the steps have seen so far."""

    vibration: list[float] = field(default_factory=list)


Check = Callable[[subprocess.CompletedProcess[str], Tutorial], None]


def documented_commands() -> list[str]:
    """Every command line of every ```sh box, in order (comments and blank lines skipped)."""
    text = TUTORIAL.read_text(encoding="utf-8")
    commands = []
    for block in re.findall(r"^```sh\n(.*?)^```", text, re.MULTILINE | re.DOTALL):
        for line in block.splitlines():
            command = line.split(" #", 1)[0].strip()
            if command and not command.startswith("#"):
                commands.append(command)
    return commands


def vibration_of_pump(output: str) -> float:
    pump = output.split("press-1:", 1)[0]
    found = re.search(r"^  vibration_rms\s+(\d+\.\d+) mm/s$", pump, re.MULTILINE)
    assert found, output
    return float(found.group(1))


def read_once(expect: str) -> Check:
    def check(done: subprocess.CompletedProcess[str], seen: Tutorial) -> None:
        assert done.returncode == 0, done.stdout + done.stderr
        assert "pump-1: 3 tag(s), 3 good" in done.stdout, done.stdout
        assert "press-1: 3 tag(s), 3 good" in done.stdout, done.stdout
        for tag in ("flow", "outlet_pressure", "vibration_rms"):
            assert re.search(rf"^  {tag}\s+\d+\.\d{{3}} ", done.stdout, re.MULTILINE), (tag, done.stdout)
        vibration = vibration_of_pump(done.stdout)
        if expect == "healthy":
            assert vibration < HEALTHY, f"the tutorial says about 1 mm/s here, got {vibration}"
        else:
            assert vibration > FAULTY, f"the tutorial says the vibration jumped here, got {vibration}"
            assert vibration > 3 * seen.vibration[-1], (seen.vibration, vibration)
        seen.vibration.append(vibration)

    return check


def printed(line: str) -> Check:
    def check(done: subprocess.CompletedProcess[str], _seen: Tutorial) -> None:
        assert done.returncode == 0, done.stderr
        assert done.stdout.strip() == line

    return check


def lists_faults(done: subprocess.CompletedProcess[str], _seen: Tutorial) -> None:
    assert done.returncode == 0, done.stderr
    for name in ("bearing_wear", "imbalance"):
        assert re.search(rf"^{name} ", done.stdout, re.MULTILINE), done.stdout
    assert "pump: vibration_rms/motor_current/motor_temperature" in done.stdout  # bearing wear, as explained


def refuses_the_typo(done: subprocess.CompletedProcess[str], _seen: Tutorial) -> None:
    assert done.returncode == 2
    assert done.stderr.startswith(
        "edge-sim: pump-1 is a pump and has no fault 'wobble'. Fix: use one of ['bearing_wear', 'cavitation', "
    ), done.stderr


STEPS: list[tuple[str, Check | None]] = [
    (SIM_RUN, None),  # long-running: started in the background by the fixture, stopped with Ctrl+C
    (ONCE, read_once("healthy")),
    (FAULTS, lists_faults),
    (INJECT_BEARING, printed("injected bearing_wear into pump-1: severity 1, sudden")),
    (ONCE, read_once("faulty")),
    (CLEAR, printed("cleared 1 fault(s) on pump-1")),
    (ONCE, read_once("healthy")),
    (INJECT_IMBALANCE, printed("injected imbalance into pump-1: severity 1, sudden")),
    (ONCE, read_once("faulty")),
    (CLEAR, printed("cleared 1 fault(s) on pump-1")),
    (TYPO, refuses_the_typo),
]


def test_every_command_is_covered() -> None:
    tested = [command for command in documented_commands() if command not in COVERED_ELSEWHERE]
    assert tested == [command for command, _check in STEPS], (
        "docs/tutorial.md's commands changed: give each new command a step in STEPS (document "
        "order) or an entry in COVERED_ELSEWHERE naming the test that runs it"
    )
    assert set(COVERED_ELSEWHERE) <= set(documented_commands()), "COVERED_ELSEWHERE names a command the doc dropped"


def argv(command: str) -> list[str]:
    """The command as a student types it; `.venv/bin/X` from the running interpreter's venv if ROOT has none."""
    words = shlex.split(command)
    if words[0].startswith(".venv/bin/") and not (ROOT / words[0]).exists():
        words[0] = str(Path(sys.executable).parent / words[0].removeprefix(".venv/bin/"))
    return words


def port_is_free(port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            probe.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


@pytest.fixture
def simulator(tmp_path: Path) -> Iterator[Path]:
    """`edge-sim run` as documented, in the background (the tutorial's first terminal)."""
    busy = [f"{port} ({what})" for port, what in DEFAULT_PORTS.items() if not port_is_free(port)]
    if busy:
        pytest.fail(
            f"the tutorial's default port(s) {', '.join(busy)} are in use on 127.0.0.1; this test runs the "
            "tutorial's commands as written, on those ports. Fix: stop whatever uses them (another "
            "edge-sim run?) and run the test again"
        )
    output = tmp_path / "edge-sim.out"
    with output.open("wb") as sink:
        process = subprocess.Popen(argv(SIM_RUN), cwd=ROOT, stdout=sink, stderr=subprocess.STDOUT)
    try:
        wait_until_sync(
            lambda: "edge-sim running" in output.read_text() or process.poll() is not None, 20, "edge-sim run up"
        )
        text = output.read_text()
        assert process.poll() is None, text
        assert "OPC UA  opc.tcp://127.0.0.1:4840/edge-sim/" in text
        assert "Control 127.0.0.1:5021 " in text
        assert "Modbus  127.0.0.1:5020  unit ids: pump-1=1, press-1=2" in text
        yield output
        process.send_signal(signal.SIGINT)  # Ctrl+C, as the tutorial says
        assert process.wait(timeout=20) == 0
        assert "edge-sim stopped; client write requests seen: 0" in output.read_text()
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()


def test_tutorial_commands_do_what_it_says(simulator: Path) -> None:
    commands = [command for command in documented_commands() if command not in COVERED_ELSEWHERE]
    assert commands[0] == SIM_RUN
    seen = Tutorial()
    for command, (step, check) in zip(commands[1:], STEPS[1:], strict=True):
        assert command == step, "docs/tutorial.md and STEPS disagree: see test_every_command_is_covered"
        done = subprocess.run(argv(command), cwd=ROOT, capture_output=True, text=True, timeout=60, check=False)
        assert check is not None
        try:
            check(done, seen)
        except AssertionError as exc:
            raise AssertionError(f"docs/tutorial.md: `{command}`: {exc}") from exc
    assert len(seen.vibration) == 4
