"""A Modbus TCP server built on libmodbus (not pymodbus), compiled from libmodbus_server.c.

``build(folder)`` compiles the server once per source version (gcc, Debian's libmodbus-dev,
pkg-config); ``LibmodbusServer(binary, folder)`` runs it on an ephemeral loopback port as a
context manager (or, with ``serial=``, as a Modbus RTU unit on a serial port, e.g. one end of a
``SerialPair``). ``stats()`` asks the running server for its counters (SIGUSR1), so a test or a
benchmark can count the requests one poll sent and check that none was a write.

``HOLDING``, ``INPUT``, ``COILS`` and ``DISCRETE_INPUTS`` are what the server holds, as tag
definitions of the agent's Modbus config plus the value each must read as. They mirror the C
source's header comment; the values are placed there byte by byte, independently of the agent.
"""

from __future__ import annotations

import hashlib
import os
import re
import select
import shutil
import signal
import struct
import subprocess
import time
from pathlib import Path
from typing import Any, Self

from tests.interop.announced import AnnouncedServer

HERE = Path(__file__).resolve().parent
SOURCE = HERE / "libmodbus_server.c"
BUILD_TIMEOUT_S = 120.0
SOCAT_TIMEOUT_S = 10.0

ORDER_BASES = {"ABCD": 0, "DCBA": 30, "BADC": 55, "CDAB": 85}
STRING_ORDERS = ("ABCD", "BADC")
HOLE = range(208, 213)
"""Holding registers the server refuses (exception 2) in any read that touches them."""


def _float32(value: float) -> float:
    """``value`` rounded to a 32-bit float, as the C server stores ``1234.5678f``."""
    result: float = struct.unpack(">f", struct.pack(">f", value))[0]
    return result


def _typed_holding() -> list[tuple[dict[str, Any], object]]:
    entries: list[tuple[dict[str, Any], object]] = []
    for order, base in ORDER_BASES.items():
        fields: list[tuple[str, int, object]] = [
            ("int16", 0, -12345),
            ("uint16", 1, 54321),
            ("int32", 2, -123456789),
            ("uint32", 4, 3000000000),
            ("float32", 6, _float32(1234.5678)),
            ("int64", 8, -1234567890123456789),
            ("uint64", 12, 18000000000000000000),
            ("float64", 16, -12345.678901234567),
        ]
        for data_type, offset, value in fields:
            tag = {"name": f"{data_type}_{order}", "address": base + offset, "type": data_type, "byte_order": order}
            entries.append((tag, value))
        if order in STRING_ORDERS:
            tag = {"name": f"string_{order}", "address": base + 20, "type": "string", "length": 8, "byte_order": order}
            entries.append((tag, "EXTRUDER-7/B"))
    for bit, value in ((0, True), (1, False), (5, True), (15, True)):
        entries.append(({"name": f"bit{bit}", "address": 28, "type": "bool", "bit": bit}, value))
    # scale and offset apply to the raw number: uint16 54321 * 0.01 - 100
    entries.append(({"name": "scaled", "address": 1, "type": "uint16", "scale": 0.01, "offset": -100}, 443.21))
    return [({"table": "holding", **tag}, value) for tag, value in entries]


HOLDING = _typed_holding()
INPUT: list[tuple[dict[str, Any], object]] = [
    ({"table": "input", "name": "in_float32", "address": 0, "type": "float32"}, _float32(1234.5678)),
    ({"table": "input", "name": "in_int32_CDAB", "address": 2, "type": "int32", "byte_order": "CDAB"}, -123456789),
    ({"table": "input", "name": "in_uint16", "address": 4, "type": "uint16"}, 4321),
]
COIL_PATTERN = (1, 0, 1, 1, 0, 0, 0, 1, 1, 1, 1, 1, 0, 0, 0, 1)
COILS = [({"table": "coil", "name": f"coil{i}", "address": i}, bool(COIL_PATTERN[i])) for i in (0, 1, 3, 6, 7, 15)]
DISCRETE_INPUTS = [
    ({"table": "discrete_input", "name": f"di{i}", "address": i}, not COIL_PATTERN[i]) for i in (0, 1, 2, 12)
]
EVERY_TYPE = HOLDING + INPUT + COILS + DISCRETE_INPUTS


def build(folder: Path) -> Path:
    """Compile libmodbus_server.c into ``folder`` (once per source version); the binary's path."""
    digest = hashlib.sha256(SOURCE.read_bytes()).hexdigest()[:12]
    binary = folder / f"libmodbus_server-{digest}"
    if binary.is_file():
        return binary
    for tool, package in (("gcc", "gcc"), ("pkg-config", "pkg-config")):
        if shutil.which(tool) is None:
            raise RuntimeError(f"{tool} is not installed. Fix: apt-get install -y {package} libmodbus-dev")
    flags = subprocess.run(
        ["pkg-config", "--cflags", "--libs", "libmodbus"], capture_output=True, text=True, check=False
    )
    if flags.returncode != 0:
        raise RuntimeError(f"libmodbus is not installed. Fix: apt-get install -y libmodbus-dev\n{flags.stderr}")
    folder.mkdir(parents=True, exist_ok=True)
    partial = binary.with_suffix(".tmp")
    command = [
        "gcc",
        "-std=c11",
        "-D_POSIX_C_SOURCE=200809L",
        "-O2",
        "-Wall",
        "-Wextra",
        "-o",
        str(partial),
        str(SOURCE),
        *flags.stdout.split(),
    ]
    result = subprocess.run(command, capture_output=True, text=True, timeout=BUILD_TIMEOUT_S, check=False)
    if result.returncode != 0:
        raise RuntimeError(f"$ {' '.join(command)}\nfailed (exit {result.returncode}):\n{result.stderr}")
    partial.rename(binary)  # atomic: a parallel build never runs a half-written binary
    return binary


class LibmodbusServer(AnnouncedServer):
    """``with LibmodbusServer(build(tmp), tmp) as server:`` ... ``server.port`` ... ``server.stats()``."""

    def __init__(
        self, binary: Path, folder: Path, *, registers: int = 1000, serial: str | None = None, unit: int = 1
    ) -> None:
        """Modbus TCP on an ephemeral port; with ``serial``, Modbus RTU as ``unit`` on that serial port."""
        rtu = ["rtu", serial, str(unit)] if serial is not None else []
        super().__init__([str(binary), str(registers), *rtu], folder / f"libmodbus-server-{id(self):x}.log")
        self.final: dict[str, Any] | None = None

    @property
    def port(self) -> int:
        return int(self.announcement["port"])

    def stats(self) -> dict[str, Any]:
        """The counters now: requests, writes, exceptions, connections, by_function {"3": n, ...}."""
        return self.signal_for_line(signal.SIGUSR1)

    def stop(self, timeout: float = 10.0) -> dict[str, Any] | None:
        final = super().stop(timeout)
        self.final = final if final is not None else self.final
        return final

    def __enter__(self) -> Self:
        return self.start()


class SerialPair:
    """Two linked pseudo-terminals made by socat, like a null-modem cable: ``server_end``, ``agent_end``."""

    def __init__(self, folder: Path) -> None:
        self.server_end = str(folder / "server-tty")
        self.agent_end = str(folder / "agent-tty")
        self._process: subprocess.Popen[bytes] | None = None

    def __enter__(self) -> Self:
        socat = shutil.which("socat")
        if socat is None:
            raise RuntimeError("socat is not installed. Fix: apt-get install -y socat (scripts/test installs it)")
        ends = [f"pty,raw,echo=0,link={end}" for end in (self.server_end, self.agent_end)]
        self._process = subprocess.Popen([socat, *ends], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        deadline = time.monotonic() + SOCAT_TIMEOUT_S
        while not (Path(self.server_end).exists() and Path(self.agent_end).exists()):
            if self._process.poll() is not None or time.monotonic() > deadline:
                self.__exit__()
                raise RuntimeError(f"socat did not make the serial pair within {SOCAT_TIMEOUT_S:g} s")
            time.sleep(0.02)
        return self

    def __exit__(self, *exc: object) -> None:
        process, self._process = self._process, None
        if process is None:
            return
        process.terminate()
        try:
            process.wait(timeout=5)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
        if process.stderr is not None:
            process.stderr.close()


class SerialGateway:
    """A transparent serial-to-Ethernet gateway made by socat: RTU frames from one TCP client go to a
    pseudo-terminal (``device``, where a Modbus RTU server listens) and back, unchanged.

    Like a serial device server in ``framing: rtu_over_tcp`` set-ups. One TCP connection, then it ends.
    """

    def __init__(self, folder: Path) -> None:
        self.device = str(folder / "gateway-tty")
        self.port = 0
        self._process: subprocess.Popen[bytes] | None = None

    def __enter__(self) -> Self:
        socat = shutil.which("socat")
        if socat is None:
            raise RuntimeError("socat is not installed. Fix: apt-get install -y socat (scripts/test installs it)")
        command = [socat, "-d", "-d", f"PTY,raw,echo=0,link={self.device}", "TCP-LISTEN:0,bind=127.0.0.1,reuseaddr"]
        self._process = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        assert self._process.stderr is not None
        fd = self._process.stderr.fileno()
        deadline = time.monotonic() + SOCAT_TIMEOUT_S
        seen = b""
        while (found := re.search(rb"listening on AF=2 127\.0\.0\.1:(\d+)", seen)) is None:
            left = deadline - time.monotonic()
            ready, _, _ = select.select([fd], [], [], max(left, 0))
            chunk = os.read(fd, 4096) if ready else b""
            if not chunk:
                self.__exit__()
                raise RuntimeError(
                    f"socat did not listen within {SOCAT_TIMEOUT_S:g} s: {seen.decode(errors='replace')}"
                )
            seen += chunk
        self.port = int(found.group(1))
        return self

    def __exit__(self, *exc: object) -> None:
        process, self._process = self._process, None
        if process is None:
            return
        process.terminate()
        try:
            process.wait(timeout=5)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
        if process.stderr is not None:
            process.stderr.close()
