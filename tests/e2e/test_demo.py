"""`edge-agent demo` as a student runs it: values within 10 s, changing, and a clean Ctrl+C; the
models ready, an injected fault's explained alert, and its clearing, on the status page."""

from __future__ import annotations

import json
import re
import signal
import subprocess
import sys
import threading
import time
import urllib.request
from pathlib import Path
from typing import Any

from edge_agent.commands.demo import CLEAR_FAULTS
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


def _json(url: str, body: dict[str, str] | None = None) -> Any:
    data = None if body is None else json.dumps(body).encode()
    request = urllib.request.Request(url, data=data, headers={"Content-Type": "application/json"})
    with urllib.request.urlopen(request, timeout=10) as response:
        return json.load(response)


def test_demo_learns_then_an_injected_fault_raises_an_explained_alert_that_clears() -> None:
    """What a student does with the page, in real time, with the shipped demo settings."""
    process = subprocess.Popen(
        [sys.executable, "-m", "edge_agent", "demo", "--web", "127.0.0.1:0"],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    output: list[str] = []

    def read() -> None:
        assert process.stdout is not None
        output.extend(process.stdout)

    reader = threading.Thread(target=read, daemon=True)
    reader.start()
    started = time.monotonic()
    took: dict[str, float] = {}

    def page() -> str | None:
        found = [line.split("Status page: ", 1)[1].strip() for line in output if line.startswith("Status page: ")]
        return found[0] if found else None

    def state() -> dict[str, Any]:
        url = page()
        assert url is not None
        result: dict[str, Any] = _json(url + "api/state")
        return result

    def models() -> dict[str, str | None]:
        return {m["id"]: (m["model"] or {}).get("state") for m in state()["machines"]}

    def active(machine: str) -> list[dict[str, Any]]:
        return [a for a in state()["alerts"]["active"] if a["machine"] == machine]

    try:
        wait_until_sync(lambda: page() is not None, 60, "the status page address")
        wait_until_sync(lambda: set(models().values()) == {"ready"}, 180, "both machines ready")
        took["ready"] = time.monotonic() - started
        assert state()["alerts"]["active"] == [], "no alert before a fault"

        url = page()
        assert url is not None
        assert _json(url + "api/inject", {"machine": "pump-1", "fault": "imbalance"})["injected"]
        injected = time.monotonic()
        wait_until_sync(lambda: bool(active("pump-1")), 180, "the alert on pump-1")
        took["alert"] = time.monotonic() - injected
        alert = active("pump-1")[0]
        assert alert["signals"][0]["signal"] == "vibration_rms", alert
        assert "imbalance" in alert["hint"]["cause"], alert

        assert _json(url + "api/inject", {"machine": "pump-1", "fault": CLEAR_FAULTS})["injected"]
        cleared = time.monotonic()
        wait_until_sync(lambda: not active("pump-1"), 300, "the alert to clear")
        took["clear"] = time.monotonic() - cleared
        assert [a["machine"] for a in state()["alerts"]["recent"]] == ["pump-1"]
        print(", ".join(f"{what} after {seconds:.1f} s" for what, seconds in took.items()))
        process.send_signal(signal.SIGINT)
        assert process.wait(timeout=15) == 0, "".join(output)
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
        reader.join(timeout=5)
        if process.stdout is not None:
            process.stdout.close()
    text = "".join(output)
    assert "Traceback" not in text
    assert "normal learned" in text
    assert "model error" not in text
