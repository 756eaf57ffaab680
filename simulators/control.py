"""The control endpoint of a running ``edge-sim run``: inject and clear faults from another terminal.

``edge-sim run`` listens on 127.0.0.1 (port 5021 by default) for one JSON object per line and
answers with one JSON object per line. Only loopback clients are served, whatever ``--host``
the protocol servers bind: this is the simulator's own control, it changes only the simulated
plant and never reaches the agent. ``edge-sim inject`` is its client.

Requests (``op`` picks the action; unknown keys are refused):

    {"op": "inject", "machine": "pump-1", "fault": "bearing_wear", "severity": 1.0,
     "progression": "sudden", "signal": null}
    {"op": "clear", "machine": "pump-1", "fault": null}           (null: every fault)
    {"op": "protocol", "protocol": "modbus", "kind": "exception", "machine": "pump-1",
     "code": "device_busy", "latency": null, "offset": null, "probability": 1.0}
    {"op": "clear_protocol", "protocol": null, "machine": null}    (null: both, every machine)
    {"op": "machines"}

Answers: ``{"ok": true, "message": "..."}`` or ``{"ok": false, "error": "... Fix: ..."}``.
"""

from __future__ import annotations

import asyncio
import contextlib
import ipaddress
import json
import socket
from typing import Any, Final

from simulators.errors import SimulatorError
from simulators.faults import FAULT_KINDS
from simulators.protocol_faults import PROTOCOL_FAULT_KINDS
from simulators.simulation import Simulation

DEFAULT_CONTROL_PORT: Final = 5021
CONTROL_HOST: Final = "127.0.0.1"
MAX_LINE: Final = 64 * 1024

_FIELDS: Final[dict[str, frozenset[str]]] = {
    "inject": frozenset({"machine", "fault", "severity", "progression", "signal"}),
    "clear": frozenset({"machine", "fault"}),
    "protocol": frozenset({"protocol", "kind", "machine", "code", "latency", "offset", "probability"}),
    "clear_protocol": frozenset({"protocol", "machine"}),
    "machines": frozenset(),
}


class ControlUnavailableError(SimulatorError):
    """Nothing listens on the control address: no ``edge-sim run`` is running there."""


def faults_for(sim: Simulation, machine_id: str) -> list[str]:
    """The faults a machine's kind can have (sensor faults need ``signal``)."""
    kind = sim.plant.kind(machine_id)
    return sorted(name for name, spec in FAULT_KINDS.items() if kind in spec.kinds)


def _text(request: dict[str, Any], key: str, *, required: bool = True) -> str | None:
    value = request.get(key)
    if value is None and not required:
        return None
    if not isinstance(value, str) or not value:
        raise SimulatorError(f"{key!r} must be a non-empty string, got {value!r}")
    return value


def _check_machine(sim: Simulation, machine_id: str) -> None:
    if machine_id not in sim.machine_ids:
        raise SimulatorError(f"no machine {machine_id!r} in this edge-sim run. Fix: use one of {sim.machine_ids}")


def handle(sim: Simulation, request: object) -> str:
    """Carry out one request on ``sim``; returns what happened, raises ``SimulatorError`` if refused."""
    if not isinstance(request, dict):
        raise SimulatorError('a request is one JSON object per line, e.g. {"op": "machines"}')
    op = request.get("op")
    if op not in _FIELDS:
        raise SimulatorError(f"unknown op {op!r}. Fix: use one of {sorted(_FIELDS)}")
    unknown = sorted(set(request) - _FIELDS[op] - {"op"})
    if unknown:
        raise SimulatorError(f"{op}: unknown key(s) {unknown}. Fix: use only {sorted(_FIELDS[op])}")
    if op == "machines":
        return ", ".join(f"{m} ({sim.plant.kind(m)})" for m in sim.machine_ids)
    if op == "clear_protocol":
        protocol = _text(request, "protocol", required=False)
        machine = _text(request, "machine", required=False)
        if machine is not None:
            _check_machine(sim, machine)
        if protocol not in {None, "opcua", "modbus"}:
            raise SimulatorError(f"unknown protocol {protocol!r}. Fix: use opcua or modbus")
        sim.clear_protocol_faults(protocol, machine)  # type: ignore[arg-type]  # checked just above
        return f"cleared {protocol or 'all'} protocol faults on {machine or 'every machine'}"
    if op == "protocol":
        return _protocol(sim, request)
    machine = _text(request, "machine")
    assert machine is not None
    _check_machine(sim, machine)
    if op == "clear":
        fault = _text(request, "fault", required=False)
        ended = sim.clear_fault(machine, fault)
        return f"cleared {ended} fault(s) on {machine}"
    return _inject(sim, machine, request)


def _inject(sim: Simulation, machine: str, request: dict[str, Any]) -> str:
    fault = _text(request, "fault")
    assert fault is not None
    kind = sim.plant.kind(machine)
    spec = FAULT_KINDS.get(fault)
    if spec is None or kind not in spec.kinds:
        raise SimulatorError(
            f"{machine} is a {kind} and has no fault {fault!r}. Fix: use one of {faults_for(sim, machine)}"
        )
    severity = request.get("severity", 1.0)
    if severity is None:
        severity = 1.0
    if isinstance(severity, bool) or not isinstance(severity, int | float):
        raise SimulatorError(f"severity must be a number in (0, 1], got {severity!r}")
    progression = _text(request, "progression", required=False)
    signal = _text(request, "signal", required=False)
    made = sim.inject_fault(machine, fault, float(severity), progression=progression, signal=signal)
    on = f" on {made.signal}" if made.signal else ""
    ramp = "" if made.progression == "sudden" else f" over {made.ramp_s:g} s of simulated time"
    return f"injected {made.fault}{on} into {machine}: severity {made.severity:g}, {made.progression}{ramp}"


def _protocol(sim: Simulation, request: dict[str, Any]) -> str:
    protocol = _text(request, "protocol")
    kind = _text(request, "kind")
    machine = _text(request, "machine", required=False)
    if machine is not None:
        _check_machine(sim, machine)
    if protocol not in {"opcua", "modbus"}:
        raise SimulatorError(f"unknown protocol {protocol!r}. Fix: use opcua or modbus")
    if kind not in PROTOCOL_FAULT_KINDS:
        raise SimulatorError(f"unknown protocol fault {kind!r}. Fix: use one of {list(PROTOCOL_FAULT_KINDS)}")
    probability = request.get("probability", 1.0)
    if probability is None:
        probability = 1.0
    if isinstance(probability, bool) or not isinstance(probability, int | float):
        raise SimulatorError(f"probability must be a number in (0, 1], got {probability!r}")
    code = request.get("code")
    if code is not None and not isinstance(code, str | int):
        raise SimulatorError(f"code must be a name or a number, got {code!r}")
    sim.inject_protocol_fault(
        protocol,  # type: ignore[arg-type]  # checked above
        kind,
        machine,
        latency=_text(request, "latency", required=False),
        code=code,
        probability=float(probability),
        offset=_text(request, "offset", required=False),
    )
    return f"{protocol} {kind} on {machine or 'every machine'}"


class ControlServer:
    """A JSON-lines TCP server on 127.0.0.1 that applies requests to one running ``Simulation``."""

    def __init__(self, sim: Simulation, port: int = DEFAULT_CONTROL_PORT) -> None:
        self._sim = sim
        self._requested_port = port
        self._server: asyncio.Server | None = None
        self._writers: set[asyncio.StreamWriter] = set()

    @property
    def port(self) -> int:
        """The port listened on (the real one when started with 0)."""
        if self._server is None:
            raise SimulatorError("the control server is not started")
        port: int = self._server.sockets[0].getsockname()[1]
        return port

    async def start(self) -> None:
        """Listen on 127.0.0.1; ``OSError`` if the port is taken."""
        self._server = await asyncio.start_server(
            self._client, CONTROL_HOST, self._requested_port, limit=MAX_LINE, reuse_address=True
        )

    async def close(self) -> None:
        """Stop listening and wait for open connections to finish."""
        if self._server is not None:
            self._server.close()
            for writer in list(self._writers):
                writer.close()
            await self._server.wait_closed()
            self._server = None

    async def __aenter__(self) -> ControlServer:
        await self.start()
        return self

    async def __aexit__(self, *_exc: object) -> None:
        await self.close()

    async def _client(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self._writers.add(writer)
        try:
            peer = writer.get_extra_info("peername")
            if not (isinstance(peer, tuple) and ipaddress.ip_address(peer[0]).is_loopback):
                return  # loopback only, even if someone forwards the port
            while line := await reader.readline():
                writer.write(json.dumps(self._answer(line)).encode() + b"\n")
                await writer.drain()
        except (ConnectionError, asyncio.LimitOverrunError, ValueError):
            pass  # a client that went away or sent a line too long: nothing to answer
        finally:
            self._writers.discard(writer)
            writer.close()
            with contextlib.suppress(ConnectionError):
                await writer.wait_closed()

    def _answer(self, line: bytes) -> dict[str, Any]:
        try:
            request = json.loads(line)
        except ValueError:
            return {"ok": False, "error": "not JSON. Fix: send one JSON object per line"}
        try:
            return {"ok": True, "message": handle(self._sim, request)}
        except SimulatorError as exc:
            return {"ok": False, "error": str(exc)}


def parse_address(text: str) -> tuple[str, int]:
    """``HOST:PORT`` or ``PORT`` (host 127.0.0.1)."""
    host, sep, port = text.rpartition(":")
    if not sep:
        host, port = CONTROL_HOST, text
    try:
        number = int(port)
    except ValueError:
        raise SimulatorError(f"{text!r} is not HOST:PORT. Fix: e.g. --control 127.0.0.1:5021") from None
    if not 0 < number < 65536:
        raise SimulatorError(f"{text!r}: port {number} is not a TCP port (1-65535)")
    return host or CONTROL_HOST, number


def request(host: str, port: int, message: dict[str, Any], timeout: float = 5.0) -> str:
    """Send one request to a running ``edge-sim run``; returns its message.

    Raises ``ControlUnavailableError`` when nothing listens there and ``SimulatorError`` with the
    server's explanation when the request is refused.
    """
    try:
        with socket.create_connection((host, port), timeout=timeout) as conn:
            conn.sendall(json.dumps(message).encode() + b"\n")
            with conn.makefile("rb") as answer_file:
                line = answer_file.readline(MAX_LINE)
    except (ConnectionRefusedError, socket.gaierror, TimeoutError):
        where = f"{host}:{port}"
        raise ControlUnavailableError(
            f"no edge-sim run is listening on {where}; start it with edge-sim run"
            + ("" if port == DEFAULT_CONTROL_PORT else f" --control-port {port}")
        ) from None
    except OSError as exc:
        raise ControlUnavailableError(f"cannot reach edge-sim run at {host}:{port}: {exc}") from None
    if not line:
        raise ControlUnavailableError(f"{host}:{port} closed the connection without answering; is it edge-sim run?")
    try:
        answer = json.loads(line)
    except ValueError:
        raise ControlUnavailableError(f"{host}:{port} did not answer in JSON; is it edge-sim run?") from None
    if not isinstance(answer, dict):
        raise ControlUnavailableError(f"{host}:{port} answered {answer!r}; is it edge-sim run?")
    if not answer.get("ok"):
        raise SimulatorError(str(answer.get("error")))
    return str(answer.get("message", ""))
