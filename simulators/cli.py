"""``edge-sim``: serve the simulated plant, describe it, record it, list its faults, inject faults.

    edge-sim run [--opcua-port 4840] [--modbus-port 5020] [--control-port 5021] [--host 127.0.0.1]
                 [--seed N] [--machines pump-1 press-1] [--scenario S] [--time-scale X] [--interval 0.1]
                 [--extra-tags N] [--opcua-extra-namespaces N] [--modbus-serial /dev/ttyUSB1]
    edge-sim inject MACHINE FAULT [--severity 1] [--progression sudden] [--signal SIG] [--control HOST:PORT]
    edge-sim inject MACHINE --clear [FAULT]
    edge-sim inject MACHINE KIND --protocol modbus|opcua [--code C] [--latency 500ms] [--offset -1h]
    edge-sim inject MACHINE --clear --protocol modbus|opcua
    edge-sim describe [--json] [--machines pump-1 press-1 | --scenario S]
    edge-sim record [--scenario S | --seed N --machines ...] --duration 7d --out data.csv [--step 1s]
    edge-sim faults
    edge-sim check S [S ...]

Exit codes: 0 done, 1 cannot listen or write, 2 bad input (nothing was started or written),
130 interrupted while recording (no partial file is left).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import signal
import sys
import time
from collections.abc import Sequence
from pathlib import Path

from simulators.arguments import EVERY_FAULT, build_parser
from simulators.control import CONTROL_HOST, ControlServer, request
from simulators.errors import SimulatorError
from simulators.faults import FAULT_KINDS, Fault
from simulators.register_map import PlantDescription, describe
from simulators.scenario import Scenario, load_scenario, parse_scenario
from simulators.simulation import Simulation
from simulators.truth import timeline, write_timeline


def _scenario_for(args: argparse.Namespace) -> Scenario:
    """The scenario file, or an implicit one built from --seed/--machines (never both)."""
    if args.scenario is not None:
        if args.machines is not None or args.seed is not None:
            raise SimulatorError("--seed and --machines come from the scenario file. Fix: set them in the scenario")
        return load_scenario(args.scenario)
    lines = [f"seed: {args.seed if args.seed is not None else 1}"]
    if args.machines:
        lines.append("machines: [" + ", ".join(json.dumps(m) for m in args.machines) + "]")
    return parse_scenario("\n".join(lines), "<command line>")


def format_faults() -> str:
    """The fault library as text."""
    lines = []
    for spec in FAULT_KINDS.values():
        scope = (
            "one signal (give signal=...)"
            if spec.sensor
            else ", ".join(f"{kind}: {'/'.join(spec.affects.get(kind, ()))}" for kind in sorted(spec.kinds))
        )
        lines.append(f"{spec.name:<15}{spec.description}")
        lines.append(f"{'':<15}default {spec.default_progression}, ramp {spec.default_ramp_s:g} s; affects {scope}")
    return "\n".join(lines)


def format_description(description: PlantDescription) -> str:
    """The register map as text a person can follow with a Modbus tool or an OPC UA browser."""
    lines = [f"OPC UA namespace {description.namespace_uri}, endpoint path {description.endpoint_path}", ""]
    for machine in description.machines:
        lines.append(
            f"{machine.machine_id} ({machine.kind}) - Modbus unit id {machine.modbus_unit_id}, "
            f"OPC UA object {machine.opcua_object}"
        )
        lines.append(f"  {'signal':<22}{'unit':<7}{'input reg':<11}{'holding':<9}OPC UA node id")
        for s in machine.signals:
            lines.append(
                f"  {s.name:<22}{s.unit:<7}{s.modbus_input_address:<11}{s.modbus_holding_address:<9}{s.opcua_node}"
            )
        for name, node in machine.status_nodes.items():
            lines.append(f"  {name:<22}{'':<7}{'':<11}{machine.modbus_status.get(name, '-'):<9} {node}")
        lines.append("")
    lines.append("Conventions:")
    lines.extend(f"  {key}: {text}" for key, text in description.conventions.items())
    return "\n".join(lines)


async def _serve(args: argparse.Namespace, truth: list[Fault]) -> None:
    """Serve until SIGINT/SIGTERM; ``truth`` receives the ground truth however the run ends."""
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        with contextlib.suppress(NotImplementedError):  # Windows: Ctrl+C arrives as KeyboardInterrupt
            loop.add_signal_handler(sig, stop.set)
    async with Simulation(
        seed=args.seed,
        machines=args.machines,
        update_interval=args.interval,
        opcua_port=args.opcua_port,
        modbus_port=args.modbus_port,
        host=args.host,
        time_scale=args.time_scale,
        scenario=args.scenario,
        opcua_security=args.opcua_security,
        opcua_users=dict(args.opcua_user) if args.opcua_user else None,
        modbus_framing=args.modbus_framing,
        modbus_byte_order=args.modbus_byte_order,
        extra_tags=args.extra_tags,
        opcua_extra_namespaces=args.opcua_extra_namespaces,
        modbus_serial=args.modbus_serial,
    ) as sim:
        if args.opcua_cert_out is not None and args.opcua_port is not None and sim.opcua.certificate is not None:
            await asyncio.to_thread(Path(args.opcua_cert_out).write_bytes, sim.opcua.certificate)
        if args.opcua_port is not None:
            users = f", users: {', '.join(sorted(dict(args.opcua_user)))}" if args.opcua_user else ""
            moved = f" at index {sim.opcua.namespace_index}" if args.opcua_extra_namespaces else ""
            print(
                f"OPC UA  {sim.opcua.endpoint}  (namespace {sim.opcua.namespace_uri}{moved}, "
                f"security {sim.opcua.security}{users})",
                flush=True,
            )
        control = ControlServer(sim, args.control_port) if args.control_port is not None else None
        if control is not None:
            await control.start()
            print(f"Control {CONTROL_HOST}:{control.port}  (edge-sim inject MACHINE FAULT; loopback only)", flush=True)
        if args.modbus_serial is not None:
            units = ", ".join(f"{m}={sim.modbus.unit_id(m)}" for m in sim.machine_ids)
            print(f"Modbus  RTU on {args.modbus_serial} (19200 8N1)  unit ids: {units}", flush=True)
        elif args.modbus_port is not None:
            units = ", ".join(f"{m}={sim.modbus.unit_id(m)}" for m in sim.machine_ids)
            framing = "" if sim.modbus.framing == "tcp" else f"  framing {sim.modbus.framing}"
            print(f"Modbus  {args.host}:{sim.modbus.port}  unit ids: {units}{framing}", flush=True)
        print("edge-sim running; Ctrl+C to stop", flush=True)
        shower = asyncio.create_task(_show(sim, args.show), name="edge-sim-show") if args.show else None
        try:
            await stop.wait()
        finally:
            if control is not None:
                await control.close()
            if shower is not None:
                shower.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await shower
            truth.extend(sim.ground_truth())
    print(f"edge-sim stopped; client write requests seen: {sim.write_count}", flush=True)


def format_readings(sim: Simulation) -> list[str]:
    """One line per machine: state, parts and every signal with its unit (for ``--show``)."""
    lines = []
    for machine_id, reading in sim.plant.readings().items():
        units = dict(sim.signals(machine_id))
        values = "  ".join(f"{name} {value:.4g} {units[name]}" for name, value in reading.values.items())
        faults = ", ".join(f.fault for f in sim.plant.present_faults(machine_id))
        lines.append(
            f"{machine_id:<14}{reading.state.name.lower():<8}parts {reading.parts_count:<6} {values}"
            + (f"  [fault: {faults}]" if faults else "")
        )
    return lines


async def _show(sim: Simulation, every: float) -> None:
    while True:
        await asyncio.sleep(every)
        print("\n".join(format_readings(sim)), flush=True)


def _record(args: argparse.Namespace) -> int:
    from simulators.record import record

    scenario = _scenario_for(args)
    began = time.perf_counter()
    try:
        summary = record(scenario, args.duration, args.out, args.step)
        if args.truth is not None:
            occurred = [f for f in scenario.build_plant().faults.faults if f.start_s <= args.duration]
            write_timeline(args.truth, timeline(occurred, scenario.start))
    except OSError as exc:
        print(f"edge-sim: cannot write {args.out}: {exc.strerror}. Fix: check the directory exists", file=sys.stderr)
        return 1
    took = time.perf_counter() - began
    print(
        f"wrote {summary.rows} rows x {len(summary.columns)} columns to {args.out} in {took:.1f} s "
        f"({summary.anomalous_rows} rows with a fault present)",
        file=sys.stderr,
    )
    return 0


def _describe(args: argparse.Namespace) -> int:
    if args.scenario is not None and args.machines is not None:
        raise SimulatorError("--machines and --scenario both name machines. Fix: pass one of them")
    machines = dict(load_scenario(args.scenario).machines) if args.scenario is not None else args.machines
    description = describe(machines)
    if args.json:
        print(json.dumps(description.to_dict(), indent=2, ensure_ascii=False))
    else:
        print(format_description(description))
    return 0


def _faults(_args: argparse.Namespace) -> int:
    print(format_faults())
    return 0


def _inject(args: argparse.Namespace) -> int:
    """One request to the control port of a running ``edge-sim run``."""
    message: dict[str, object]
    if args.clear is not None and args.clear != EVERY_FAULT:
        if args.fault is not None:
            raise SimulatorError("name the fault once: edge-sim inject pump-1 --clear bearing_wear")
        args.fault = args.clear
    if args.protocol is not None:
        if args.clear is not None:
            message = {"op": "clear_protocol", "protocol": args.protocol, "machine": args.machine}
        elif args.fault is None:
            raise SimulatorError(
                "name the protocol fault kind. Fix: e.g. edge-sim inject pump-1 stale --protocol modbus"
            )
        else:
            message = {
                "op": "protocol",
                "protocol": args.protocol,
                "kind": args.fault,
                "machine": args.machine,
                "code": args.code,
                "latency": args.latency,
                "offset": args.offset,
                "probability": args.probability,
            }
    elif args.clear is not None:
        message = {"op": "clear", "machine": args.machine, "fault": args.fault}
    elif args.fault is None:
        raise SimulatorError(
            "name the fault to inject, or pass --clear. "
            "Fix: e.g. edge-sim inject pump-1 bearing_wear (edge-sim faults lists them)"
        )
    else:
        message = {
            "op": "inject",
            "machine": args.machine,
            "fault": args.fault,
            "severity": args.severity,
            "progression": args.progression,
            "signal": args.signal,
        }
    host, port = args.control
    print(request(host, port, message))
    return 0


def _run(args: argparse.Namespace) -> int:
    if args.scenario is not None:
        args.scenario = load_scenario(args.scenario)  # checked (and read) before the loop starts
    truth: list[Fault] = []
    try:
        asyncio.run(_serve(args, truth))
    except OSError as exc:
        print(
            f"edge-sim: cannot listen: {exc}. Fix: choose another port (or device), or stop what uses it",
            file=sys.stderr,
        )
        return 1
    except KeyboardInterrupt:  # where signal handlers are not available (Windows)
        print("edge-sim stopped", flush=True)
    if args.truth is not None:
        write_timeline(args.truth, timeline(truth))
    return 0


def _check(args: argparse.Namespace) -> int:
    """Every problem of every file, then exit 2 if any file had one."""
    bad = 0
    for path in args.scenarios:
        try:
            scenario = load_scenario(path)
        except SimulatorError as exc:
            print(f"edge-sim: {exc}", file=sys.stderr)
            bad += 1
            continue
        spec = scenario.spec
        print(
            f"ok: {path}: {len(scenario.machines)} machine(s), {len(spec.faults)} fault(s), "
            f"{len(spec.modes)} mode window(s), {len(spec.loads)} load window(s), "
            f"{len(spec.protocol_faults)} protocol fault(s){', shifts' if spec.shifts else ''}"
        )
    return 2 if bad else 0


COMMANDS = {
    "run": _run,
    "describe": _describe,
    "record": _record,
    "faults": _faults,
    "check": _check,
    "inject": _inject,
}


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of ``edge-sim``; returns the exit code (2: bad input, nothing started)."""
    args = build_parser().parse_args(argv)
    try:
        return COMMANDS[args.command](args)
    except SimulatorError as exc:  # ScenarioError included: every problem with file, line, key, fix
        print(f"edge-sim: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:  # record: the partial file is already removed
        print("edge-sim: interrupted; nothing was written", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
