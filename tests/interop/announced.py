"""A server process that announces itself on stdout: one JSON line when ready, more on request.

The independent servers of the interop tests (node-opcua, libmodbus) bind port 0 and print the
port they got as their first JSON line, so no test ever guesses a free port. Later lines are
answers to signals (counters on SIGUSR1, final counters on SIGTERM). stderr goes to a log file
whose tail is in every error message, so a server that fails to start says why.
"""

from __future__ import annotations

import contextlib
import json
import os
import select
import signal
import subprocess
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any, NoReturn, Self

READY_TIMEOUT_S = 60.0
"""node-opcua loads the standard nodeset and makes an RSA key on first start: seconds on a loaded box."""

STOP_TIMEOUT_S = 10.0


class AnnouncedServerError(RuntimeError):
    """The server did not start, did not announce itself, or did not answer; the message has its log."""


class AnnouncedServer:
    """Run ``command``; ``start()`` returns once its first stdout line (JSON) arrived.

    ``announcement`` is that first line, parsed. ``signal_for_line`` sends a signal and returns the
    JSON line the server prints in answer; ``stop`` sends SIGTERM and returns its last JSON line
    (or None when it printed none).
    """

    def __init__(
        self,
        command: Sequence[str],
        log_path: Path,
        *,
        env: Mapping[str, str] | None = None,
        cwd: Path | None = None,
        ready_timeout: float = READY_TIMEOUT_S,
    ) -> None:
        self.command = list(command)
        self.log_path = log_path
        self._env = {**os.environ, **(env or {})}
        self._cwd = cwd
        self._ready_timeout = ready_timeout
        self._process: subprocess.Popen[bytes] | None = None
        self._buffer = b""
        self.announcement: dict[str, Any] = {}

    @property
    def pid(self) -> int:
        return self._require().pid

    def start(self) -> Self:
        with self.log_path.open("ab") as log:
            self._process = subprocess.Popen(
                self.command, stdout=subprocess.PIPE, stderr=log, env=self._env, cwd=self._cwd
            )
        self.announcement = self._line(self._ready_timeout, "announce itself (its first stdout line)")
        return self

    def signal_for_line(self, signum: int, timeout: float = 10.0) -> dict[str, Any]:
        """Send ``signum`` and return the JSON line the server prints in answer."""
        self._require().send_signal(signum)
        return self._line(timeout, f"answer signal {signal.Signals(signum).name}")

    def stop(self, timeout: float = STOP_TIMEOUT_S) -> dict[str, Any] | None:
        """SIGTERM, wait, and return the last JSON line the server printed on its way out."""
        process = self._process
        if process is None:
            return None
        self._process = None
        if process.poll() is None:
            process.terminate()
        try:
            rest, _ = process.communicate(timeout=timeout)
        except subprocess.TimeoutExpired:
            process.kill()
            process.communicate()
            raise AnnouncedServerError(f"{self.command[0]} did not stop within {timeout:g} s (killed)") from None
        lines = [line for line in (self._buffer + rest).splitlines() if line.strip()]
        self._buffer = b""
        return json.loads(lines[-1]) if lines else None

    def log_tail(self, lines: int = 30) -> str:
        try:
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return "(no log)"

    def _require(self) -> subprocess.Popen[bytes]:
        if self._process is None:
            raise AnnouncedServerError(f"{self.command[0]} is not running")
        return self._process

    def _line(self, timeout: float, what: str) -> dict[str, Any]:
        process = self._require()
        assert process.stdout is not None
        fd = process.stdout.fileno()
        deadline = time.monotonic() + timeout
        while b"\n" not in self._buffer:
            left = deadline - time.monotonic()
            if left <= 0:
                self._fail(f"did not {what} within {timeout:g} s")
            ready, _, _ = select.select([fd], [], [], left)
            if ready:
                chunk = os.read(fd, 65536)
                if not chunk:
                    self._fail(f"exited (code {process.wait()}) before it could {what}")
                self._buffer += chunk
        line, self._buffer = self._buffer.split(b"\n", 1)
        try:
            parsed: dict[str, Any] = json.loads(line)
        except json.JSONDecodeError:
            self._fail(f"printed {line[:200]!r} instead of a JSON line when asked to {what}")
        return parsed

    def _fail(self, message: str) -> NoReturn:
        process = self._process
        if process is not None:
            if process.poll() is None:
                process.kill()
            process.wait()
            if process.stdout is not None:
                process.stdout.close()
        self._process = None
        raise AnnouncedServerError(f"$ {' '.join(self.command)}\n{message}\nlog {self.log_path}:\n{self.log_tail()}")

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        with contextlib.suppress(AnnouncedServerError):
            self.stop()
