"""`edge-agent demo` as a student runs it: live values from two machines, changing, and a clean Ctrl+C."""

from __future__ import annotations

import re
import signal
import subprocess
import sys
import threading
from pathlib import Path

from tests.helpers.waiting import wait_until_sync

LINE = re.compile(r"^\d\d:\d\d:\d\d (?P<machine>[\w.-]+): (?P<values>.+)$")


def test_demo_shows_changing_values_and_stops_on_sigint(tmp_path: Path) -> None:
    process = subprocess.Popen(
        [sys.executable, "-m", "edge_agent", "demo"],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    seen: dict[str, list[str]] = {}
    output: list[str] = []

    def read() -> None:
        assert process.stdout is not None
        for line in process.stdout:
            output.append(line)
            match = LINE.match(line.strip())
            if match:
                seen.setdefault(match["machine"], []).append(match["values"])

    reader = threading.Thread(target=read, daemon=True)
    reader.start()
    try:
        wait_until_sync(
            lambda: len(seen) >= 2 and all(len(set(v)) >= 2 for v in seen.values()),
            30,
            "changing live values from two machines",
            interval=0.1,
            detail=lambda: "".join(output),
        )
        assert "BAD" not in "".join(output)
        assert "Traceback" not in "".join(output)
        process.send_signal(signal.SIGINT)
        assert process.wait(timeout=5) == 0, "".join(output)
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
        reader.join(timeout=5)
        if process.stdout is not None:
            process.stdout.close()
    assert "Traceback" not in "".join(output)
