"""``Simulation``: a plant stepped on a timer and served over real OPC UA and Modbus servers.

This is the one object tests and the demo use::

    async with Simulation(seed=1) as sim:
        sim.opcua.endpoint, sim.modbus.port, sim.modbus.unit_id("pump-1")
        sim.served("opcua", "pump-1", "flow")   # what clients could have read, with timestamps
        sim.write_count                         # client write requests seen (must stay 0)

Every ``update_interval`` seconds the plant takes one step of ``update_interval * time_scale``
simulated seconds and both servers get the new values with one shared timestamp (UTC ns,
truncated to whole microseconds). Values are recorded in the served history before a client
can see them.
"""

from __future__ import annotations

import asyncio
import logging
import math
import time
from collections.abc import Mapping
from pathlib import Path
from types import TracebackType
from typing import Literal, Self

from simulators.durations import parse_duration
from simulators.errors import SimulatorError, UnknownMachineError
from simulators.faults import Fault
from simulators.history import DEFAULT_DEPTH, ServedHistory
from simulators.modbus_server import FRAMINGS, Framing, ModbusSimServer, UnitFaults
from simulators.opcua_security import SECURITY_MODES, SecurityMode
from simulators.opcua_server import MachineFaults, OpcUaSimServer, check_extra_namespaces
from simulators.physics import MachineState
from simulators.physics.registry import MachinesArg
from simulators.plant import STATUS_SIGNALS, Plant, Reading, status_values
from simulators.protocol_faults import (
    PROTOCOL_FAULT_KINDS,
    ProtocolFaultKind,
    apply_modbus_fault,
    apply_opcua_fault,
    checked_code,
)
from simulators.register_map import BYTE_ORDERS, PlantDescription, describe
from simulators.scenario import Scenario, load_scenario

log = logging.getLogger(__name__)

Protocol = Literal["opcua", "modbus"]
PROTOCOLS: tuple[Protocol, ...] = ("opcua", "modbus")


class Simulation:
    """A running simulated plant. Use as ``async with``; nothing listens before entry or after exit."""

    def __init__(  # noqa: PLR0917 - the positional order is published API
        self,
        seed: int = 1,
        machines: MachinesArg = None,
        update_interval: float = 0.1,
        opcua_port: int | None = 0,
        modbus_port: int | None = 0,
        host: str = "127.0.0.1",
        *,
        time_scale: float | None = None,
        history_depth: int = DEFAULT_DEPTH,
        scenario: Scenario | str | Path | None = None,
        opcua_security: SecurityMode = "None",
        opcua_users: Mapping[str, str] | None = None,
        modbus_framing: Framing = "tcp",
        modbus_byte_order: str = "ABCD",
        extra_tags: int = 0,
        opcua_extra_namespaces: int = 0,
        modbus_serial: str | None = None,
    ) -> None:
        """See the module docstring. ``scenario`` (a checked ``Scenario`` or a YAML path) supplies
        the machines, seed, modes, faults and default ``time_scale``; do not pass ``machines`` too.
        A path is read here, synchronously: inside a running loop prefer ``load_scenario`` first.
        ``opcua_security="Basic256Sha256"`` and ``opcua_users={"name": "password"}`` secure the
        OPC UA server; ``sim.opcua.certificate`` is then its certificate (DER).
        ``modbus_framing="rtu_over_tcp"`` serves RTU frames over TCP (a transparent serial gateway).
        ``modbus_byte_order`` lays the input registers' float32 values out as ABCD (default),
        CDAB, BADC or DCBA, as PLCs of different vendors do. ``extra_tags=N`` gives every machine
        N auxiliary tags (``aux_01``...: slow sines, no physics) after its signals, for load tests.
        ``opcua_extra_namespaces=N`` registers N empty namespaces before the simulator's, moving it
        to index 2 + N; set ``sim.opcua.extra_namespaces`` between ``stop_server("opcua")`` and
        ``start_server("opcua")`` to restart with the namespace at another index.
        ``modbus_serial="/dev/ttyUSB1"`` serves Modbus RTU on that serial device (19200 8N1) instead
        of Modbus TCP (``modbus_port`` is then unused).
        """
        if scenario is not None and not isinstance(scenario, Scenario):
            scenario = load_scenario(scenario)
        if scenario is not None and machines is not None:
            raise SimulatorError("pass machines or a scenario, not both. Fix: list the machines in the scenario")
        if time_scale is None:
            time_scale = scenario.time_scale if scenario is not None else 1.0
        _check_arguments(
            update_interval=update_interval,
            time_scale=time_scale,
            opcua_port=opcua_port,
            modbus_port=modbus_port,
            opcua_security=opcua_security,
            modbus_framing=modbus_framing,
        )
        if modbus_byte_order not in BYTE_ORDERS:
            raise SimulatorError(
                f"modbus_byte_order must be one of {BYTE_ORDERS}, got {modbus_byte_order!r}. "
                "Fix: use ABCD for big-endian"
            )
        self.scenario = scenario
        self.seed = scenario.seed if scenario is not None else seed
        self.update_interval = float(update_interval)
        self.time_scale = float(time_scale)
        self.host = host
        self.plant = scenario.build_plant() if scenario is not None else Plant(seed, machines, extra_tags)
        self.history = ServedHistory(history_depth)
        self._opcua = (
            OpcUaSimServer(
                host,
                opcua_port,
                [(m, self.plant.signals(m)) for m in self.plant.machine_ids],
                self.seed,
                descriptions=self._node_descriptions(),
                security=opcua_security,
                users=opcua_users,
                extra_namespaces=_extra_namespaces(opcua_extra_namespaces),
            )
            if opcua_port is not None
            else None
        )
        self._modbus = (
            ModbusSimServer(
                host,
                modbus_port or 0,
                [(m, len(self.plant.signals(m))) for m in self.plant.machine_ids],
                self.seed,
                framing=modbus_framing,
                byte_order=modbus_byte_order,
                serial=modbus_serial,
            )
            if modbus_port is not None or modbus_serial is not None
            else None
        )
        self._task: asyncio.Task[None] | None = None
        self._updated: asyncio.Condition | None = None  # created on entry, inside the running loop
        self._serving = asyncio.Lock()
        self._update_count = 0
        self._last_timestamp_ns = 0
        self._last_readings: dict[str, Reading] = self.plant.readings()
        self._protocol_windows: set[int] = set()  # scenario protocol faults currently applied

    def _node_descriptions(self) -> dict[str, str]:
        texts: dict[str, str] = {}
        for machine_id, model in self.plant.machines.items():
            texts[machine_id] = f"simulated {model.kind} ({type(model).__name__})"
            for spec in model.signal_specs:
                texts[f"{machine_id}.{spec.name}"] = f"{spec.description} [{spec.unit}]"
            for name in self.plant.aux_names():
                texts[f"{machine_id}.{name}"] = "auxiliary tag for load tests (a slow sine, no physics)"
        return texts

    # -- lifecycle -----------------------------------------------------------------------------

    async def __aenter__(self) -> Self:
        await self.start()
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self.stop()

    async def start(self) -> None:
        """Start both servers, serve the initial values, then step on the timer."""
        if self._task is not None:
            raise SimulatorError("this Simulation is already running")
        self._updated = asyncio.Condition()
        self._serving = asyncio.Lock()
        try:
            if self._opcua is not None:
                await self._opcua.start()
            if self._modbus is not None:
                await self._modbus.start()
            await self._serve(self.plant.readings())
        except BaseException:
            await self._stop_servers()
            raise
        self._task = asyncio.create_task(self._run(), name="edge-sim-plant")

    async def stop(self) -> None:
        """Stop stepping and close both servers. Idempotent."""
        task, self._task = self._task, None
        if task is not None:
            task.cancel()
            try:
                await task
            except asyncio.CancelledError:
                current = asyncio.current_task()
                if current is not None and current.cancelling():
                    raise
            if self._updated is not None:  # wake waiters: they raise instead of hanging
                async with self._updated:
                    self._updated.notify_all()
        await self._stop_servers()

    async def _stop_servers(self) -> None:
        if self._opcua is not None:
            await self._opcua.stop()
        if self._modbus is not None:
            await self._modbus.stop()

    async def _run(self) -> None:
        loop = asyncio.get_running_loop()
        next_at = loop.time()
        while True:
            next_at += self.update_interval
            delay = next_at - loop.time()
            if delay > 0:
                await asyncio.sleep(delay)
            else:
                next_at = loop.time()  # fell behind: carry on from now instead of bursting
            readings = self.plant.step(self.update_interval * self.time_scale)
            self._apply_scheduled_protocol_faults()
            try:
                await self._serve(readings)
            except Exception:
                log.exception("serving simulator values failed; the plant keeps stepping")

    def _apply_scheduled_protocol_faults(self) -> None:
        """Start and end the scenario's protocol-fault windows at the plant's simulated time."""
        if self.scenario is None:
            return
        t = self.plant.time_s
        for i, entry in enumerate(self.scenario.spec.protocol_faults):
            if (self._opcua if entry.protocol == "opcua" else self._modbus) is None:
                continue  # that server is disabled in this run
            due = entry.at <= t and (entry.duration is None or t < entry.at + entry.duration)
            if due and i not in self._protocol_windows:
                self._protocol_windows.add(i)
                self.inject_protocol_fault(
                    entry.protocol,
                    entry.kind,
                    entry.machine,
                    latency=entry.latency,
                    code=entry.code,
                    probability=entry.probability,
                    offset=entry.offset,
                )
            elif not due and i in self._protocol_windows:
                self._protocol_windows.discard(i)
                self.clear_protocol_faults(entry.protocol, entry.machine)

    async def _serve(self, readings: dict[str, Reading]) -> None:
        """Serve one update; serialised, so a restart's re-serve never interleaves with a step's."""
        async with self._serving:
            await self._serve_locked(readings)

    async def _serve_locked(self, readings: dict[str, Reading]) -> None:
        timestamp_ns = (time.time_ns() // 1000) * 1000
        if timestamp_ns <= self._last_timestamp_ns:
            timestamp_ns = self._last_timestamp_ns + 1000
        self._last_timestamp_ns = timestamp_ns
        self._last_readings = readings
        if self._modbus is not None and self._modbus.running:
            for machine_id, values in self._modbus.publish(readings, timestamp_ns).items():
                self.history.record("modbus", machine_id, values, timestamp_ns)
        if self._opcua is not None and self._opcua.running:
            fresh = {m: r for m, r in readings.items() if not self._opcua.faults[m].stale}
            for machine_id, reading in fresh.items():  # recorded before any client can read it
                source_ns = self._opcua.source_ns(machine_id, timestamp_ns)  # a clock offset shifts it
                self.history.record("opcua", machine_id, {**reading.values, **status_values(reading)}, source_ns)
            await self._opcua.publish(fresh, timestamp_ns)
        self._stamp_ground_truth(timestamp_ns)
        self._update_count += 1
        if self._updated is not None:
            async with self._updated:
                self._updated.notify_all()

    def _stamp_ground_truth(self, timestamp_ns: int) -> None:
        """Give faults the wall-clock time of the first update served with / without them."""
        if self.plant.steps == 0:
            return
        now = self.plant.time_s
        for fault in self.plant.faults.faults:
            if fault.start_ns is None and fault.start_s <= now:
                fault.start_ns = timestamp_ns
            if fault.end_ns is None and fault.end_s is not None and fault.end_s <= now:
                fault.end_ns = timestamp_ns

    # -- faults and modes ------------------------------------------------------------------------

    def inject_fault(
        self,
        machine_id: str,
        fault: str,
        severity: float = 1.0,
        *,
        progression: str | None = None,
        ramp: float | str | None = None,
        duration: float | str | None = None,
        signal: str | None = None,
    ) -> Fault:
        """Start a fault now (from the next update); returns its ground-truth record.

        ``progression`` is sudden, linear or exponential (default: the fault's own, see the
        library); ``ramp`` the simulated time to full severity ("10m" or seconds); ``duration``
        ends it by itself; ``signal`` names the sensor of a sensor fault. Raises
        ``SimulatorError`` (and changes nothing) for an unknown fault, a fault that does not fit
        the machine, a missing or unknown signal, or an overlap with the same fault.
        """
        return self.plant.faults.add(
            machine_id,
            fault,
            severity=severity,
            start_s=self.plant.time_s,
            progression=progression,
            ramp_s=_seconds("ramp", ramp),
            duration_s=_seconds("duration", duration),
            signal=signal,
        )

    def clear_fault(self, machine_id: str, fault: str | None = None, *, signal: str | None = None) -> int:
        """End faults on a machine now (all of them, one kind, or one sensor's); returns how many."""
        if machine_id not in self.plant.machines:
            raise UnknownMachineError(machine_id, self.machine_ids)
        return len(self.plant.faults.clear(machine_id, fault, signal, self.plant.time_s))

    def ground_truth(self) -> list[Fault]:
        """Every fault so far (present, ended, scheduled), oldest first: the labels for evaluation."""
        return list(self.plant.faults.faults)

    def set_mode(self, machine_id: str, state: MachineState | str | None) -> None:
        """Hold a machine in a state ("off", "idle", "running", "setup"); None releases it.

        A held state wins over a scenario's mode windows; released, the machine follows its
        scenario or its automatic rhythm again.
        """
        model = self.plant.machine(machine_id)
        if state is None:
            model.forced_state = None
            return
        try:
            model.forced_state = state if isinstance(state, MachineState) else MachineState[state.upper()]
        except KeyError:
            names = [s.name.lower() for s in MachineState]
            raise SimulatorError(f"unknown state {state!r}. Fix: use one of {names} or None") from None

    def set_load(self, machine_id: str, load: float | None) -> None:
        """Hold a machine's load (0-1 of rated: a pump's valve, a press's part size); None releases it.

        Current follows within seconds, temperatures within minutes: the demo's cause and effect.
        """
        model = self.plant.machine(machine_id)
        if load is not None and not (isinstance(load, int | float) and 0.0 <= load <= 1.0):
            raise SimulatorError(f"load must be between 0 and 1, got {load!r}. Fix: e.g. set_load('pump-1', 0.9)")
        model.forced_load = None if load is None else float(load)

    # -- protocol faults -------------------------------------------------------------------------

    def inject_protocol_fault(
        self,
        protocol: Protocol,
        kind: ProtocolFaultKind,
        machine_id: str | None = None,
        *,
        latency: float | str | None = None,
        code: str | int | None = None,
        probability: float = 1.0,
        offset: float | str | None = None,
    ) -> None:
        """Make one server misbehave for one machine (or all machines when ``machine_id`` is None).

        - ``latency``: every read waits ``latency`` (seconds or "250ms") before it is answered
          (OPC UA: Read service requests; Modbus: any request to the unit);
        - ``exception`` (Modbus): every request to the unit gets exception ``code``
          ("device_busy", "illegal_address", ... or the number);
        - ``stale``: values and timestamps stop updating, the server keeps answering;
        - ``bad_status`` (OPC UA): signals carry status ``code`` ("BadSensorFailure", ...);
        - ``clock_offset`` (OPC UA): SourceTimestamps are ``offset`` off ("-1h", "90s"), as from a
          machine whose clock is wrong; ``served()`` records the shifted timestamps.

        ``probability`` below 1 makes latency, exception and bad status intermittent: each
        request (Modbus), Read (OPC UA latency) or update (bad status) is hit with that chance,
        from a generator seeded by the simulation's seed. One machine carries one probability.
        Faults stay until ``clear_protocol_faults``; they change neither physics nor ground truth.
        """
        if protocol not in PROTOCOLS:
            raise SimulatorError(f"protocol must be one of {PROTOCOLS}, got {protocol!r}")
        if kind not in PROTOCOL_FAULT_KINDS:
            raise SimulatorError(f"unknown protocol fault {kind!r}. Fix: use one of {PROTOCOL_FAULT_KINDS}")
        machines = self.machine_ids if machine_id is None else [machine_id]
        if machine_id is not None and machine_id not in self.plant.machines:
            raise UnknownMachineError(machine_id, self.machine_ids)
        seconds = _seconds("latency", latency)
        if kind == "latency" and (seconds is None or seconds < 0):
            raise SimulatorError("latency needs a non-negative duration. Fix: e.g. latency='500ms'")
        if kind == "clock_offset":
            seconds = _seconds("offset", offset)
            if seconds is None:
                raise SimulatorError("clock_offset needs an offset. Fix: e.g. offset='-1h' (a clock an hour behind)")
        if not (isinstance(probability, int | float) and 0.0 < probability <= 1.0):
            raise SimulatorError(f"probability must be in (0, 1], got {probability!r}. Fix: e.g. probability=0.2")
        number = checked_code(protocol, kind, code)
        if protocol == "modbus":
            apply_modbus_fault(self.modbus, kind, machines, seconds=seconds, code=number, probability=probability)
        else:
            apply_opcua_fault(self.opcua, kind, machines, seconds=seconds, code=number, probability=probability)

    def clear_protocol_faults(self, protocol: Protocol | None = None, machine_id: str | None = None) -> None:
        """Undo protocol faults (both servers and every machine unless narrowed)."""
        if machine_id is not None and machine_id not in self.plant.machines:
            raise UnknownMachineError(machine_id, self.machine_ids)
        machines = self.machine_ids if machine_id is None else [machine_id]
        if self._modbus is not None and protocol in {None, "modbus"}:
            for mid in machines:
                self._modbus.faults[self._modbus.unit_id(mid)] = UnitFaults()
        if self._opcua is not None and protocol in {None, "opcua"}:
            for mid in machines:
                self._opcua.faults[mid] = MachineFaults()

    async def stop_server(self, protocol: Protocol) -> None:
        """Take one server off the network (clients get connection refused); the plant keeps going.

        Nothing is recorded in ``served()`` for that protocol while it is down.
        """
        await self._server_for(protocol).stop()

    async def start_server(self, protocol: Protocol) -> None:
        """Bring a stopped server back on the same port, serving the current values at once."""
        server = self._server_for(protocol)
        if server.running:
            return
        await server.start()
        await self._serve(self._last_readings)

    def _server_for(self, protocol: Protocol) -> OpcUaSimServer | ModbusSimServer:
        if protocol not in PROTOCOLS:
            raise SimulatorError(f"protocol must be one of {PROTOCOLS}, got {protocol!r}")
        return self.opcua if protocol == "opcua" else self.modbus

    def drop_connections(self, protocol: Protocol | None = None) -> int:
        """Close every client connection now (listeners stay up, clients may reconnect)."""
        dropped = 0
        if self._modbus is not None and protocol in {None, "modbus"}:
            dropped += self._modbus.drop_connections()
        if self._opcua is not None and protocol in {None, "opcua"}:
            dropped += self._opcua.drop_connections()
        return dropped

    async def expire_sessions(self) -> int:
        """End every OPC UA session on the server side, links left open (a session timeout)."""
        return await self._opcua.expire_sessions() if self._opcua is not None else 0

    # -- what tests and the demo ask -----------------------------------------------------------

    @property
    def machine_ids(self) -> list[str]:
        """Machine ids in Modbus unit-id order."""
        return self.plant.machine_ids

    def signals(self, machine_id: str) -> list[tuple[str, str]]:
        """(signal name, SI unit) of one machine, in register-map order."""
        return self.plant.signals(machine_id)

    @property
    def opcua(self) -> OpcUaSimServer:
        """The OPC UA server (``endpoint``, ``port``, ``namespace_uri``)."""
        if self._opcua is None:
            raise SimulatorError("the OPC UA server is disabled (opcua_port=None)")
        return self._opcua

    @property
    def modbus(self) -> ModbusSimServer:
        """The Modbus TCP server (``port``, ``unit_id(machine)``)."""
        if self._modbus is None:
            raise SimulatorError("the Modbus server is disabled (modbus_port=None)")
        return self._modbus

    @property
    def write_count(self) -> int:
        """Client write requests seen by both servers (Modbus FC 5/6/15/16/22/23, OPC UA Write/Call)."""
        return sum(s.write_count for s in (self._opcua, self._modbus) if s is not None)

    @property
    def update_count(self) -> int:
        """Updates served so far (the initial values count as one)."""
        return self._update_count

    def served(self, protocol: Protocol, machine_id: str, signal: str) -> list[tuple[int, float]]:
        """Recent (timestamp_ns, value) pairs exactly as served, oldest first.

        Modbus values are float32-rounded (what a float32 decode gives). ``signal`` may also be
        ``state_code`` or ``parts_count`` (served as integers, recorded as floats). The depth is
        bounded (``history_depth`` updates, 2000 by default).
        """
        if protocol not in PROTOCOLS:
            raise SimulatorError(f"protocol must be one of {PROTOCOLS}, got {protocol!r}")
        names = [name for name, _ in self.signals(machine_id)] + list(STATUS_SIGNALS)
        if signal not in names:
            raise SimulatorError(f"machine {machine_id!r} has no signal {signal!r}; it has {names}")
        return self.history.get(protocol, machine_id, signal)

    async def wait_updates(self, count: int = 1) -> None:
        """Wait until ``count`` more updates have been served.

        Wrap it in ``asyncio.timeout(...)`` all the same (a stuck server must fail a test, not hang
        it). Raises ``SimulatorError`` if the simulation is not running or stops while waiting.
        """
        if self._updated is None or self._task is None:
            raise SimulatorError("the Simulation is not running. Fix: use it inside 'async with Simulation(...)'")
        target = self._update_count + count
        condition = self._updated
        async with condition:
            await condition.wait_for(lambda: self._update_count >= target or self._task is None)
        if self._update_count < target:
            raise SimulatorError("the Simulation stopped while waiting for updates")

    def describe(self) -> PlantDescription:
        """The register map and node ids of this plant (same data as ``simulators.describe``)."""
        return describe({m: self.plant.kind(m) for m in self.machine_ids})


def _extra_namespaces(count: int) -> int:
    try:
        return check_extra_namespaces(count)
    except ValueError as exc:
        raise SimulatorError(f"opcua_{exc}") from None


def _seconds(name: str, value: float | str | None) -> float | None:
    if value is None:
        return None
    try:
        return parse_duration(value)
    except ValueError as exc:
        raise SimulatorError(f"{name}: {exc}") from None


def _check_arguments(
    *,
    update_interval: float,
    time_scale: float,
    opcua_port: int | None,
    modbus_port: int | None,
    opcua_security: str,
    modbus_framing: str,
) -> None:
    """Refuse bad constructor arguments with the fix, before anything is built."""
    if modbus_framing not in FRAMINGS:
        raise SimulatorError(f"modbus_framing must be one of {FRAMINGS}, got {modbus_framing!r}")
    if opcua_security not in SECURITY_MODES:
        raise SimulatorError(f"opcua_security must be one of {SECURITY_MODES}, got {opcua_security!r}")
    if not (isinstance(update_interval, int | float) and math.isfinite(update_interval) and update_interval > 0):
        raise SimulatorError(f"update_interval must be a positive number of seconds, got {update_interval!r}")
    if not (math.isfinite(time_scale) and time_scale > 0):
        raise SimulatorError(
            f"time_scale must be positive (1 = real time, 60 = a minute per second), got {time_scale!r}"
        )
    for name, port in (("opcua_port", opcua_port), ("modbus_port", modbus_port)):
        if port is not None and not 0 <= port <= 65535:
            raise SimulatorError(
                f"{name}={port} is not a TCP port. Fix: 0 (any free port), 1-65535, or None to disable"
            )
