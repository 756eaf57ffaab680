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

from simulators.control import CONTROL_HOST, DEFAULT_CONTROL_PORT, ControlServer, parse_address, request
from simulators.durations import parse_duration
from simulators.errors import SimulatorError
from simulators.faults import FAULT_KINDS, Fault, Progression
from simulators.modbus_server import FRAMINGS
from simulators.opcua_security import SECURITY_MODES
from simulators.register_map import BYTE_ORDERS, PlantDescription, describe
from simulators.scenario import Scenario, load_scenario, parse_scenario
from simulators.simulation import Simulation
from simulators.truth import timeline, write_timeline

_EVERY_FAULT = "*"  # `--clear` without a fault name


def _port(text: str) -> int | None:
    """A port number; 'off' disables that server, 0 picks a free one."""
    if text.lower() in {"off", "none", "-"}:
        return None
    port = int(text)
    if not 0 <= port <= 65535:
        raise argparse.ArgumentTypeError(f"{text} is not a TCP port (0-65535, or 'off')")
    return port


def build_parser() -> argparse.ArgumentParser:
    """The argument parser (exposed so tests and docs can inspect it)."""
    parser = argparse.ArgumentParser(prog="edge-sim", description="Simulated machines served over OPC UA and Modbus.")
    commands = parser.add_subparsers(dest="command", required=True)

    run = commands.add_parser("run", help="serve the simulated plant until Ctrl+C / SIGTERM")
    run.add_argument("--opcua-port", type=_port, default=4840, help="OPC UA port, 0 = any free, 'off' = no server")
    run.add_argument("--modbus-port", type=_port, default=5020, help="Modbus TCP port, 0 = any free, 'off' = no server")
    run.add_argument(
        "--control-port",
        type=_port,
        default=DEFAULT_CONTROL_PORT,
        help="port of the fault-injection control for edge-sim inject (always 127.0.0.1), 0 = any free, 'off'",
    )
    run.add_argument("--host", default="127.0.0.1", help="address both servers bind (0.0.0.0 for the LAN)")
    run.add_argument("--seed", type=int, default=1, help="random seed; same seed, same values (scenario: its own)")
    run.add_argument("--interval", type=float, default=0.1, help="seconds between plant updates")
    run.add_argument("--machines", nargs="+", default=None, help="machine ids, kind before the last '-' (pump-2)")
    run.add_argument("--scenario", default=None, help="scenario YAML: machines, modes, faults, time scale")
    run.add_argument("--time-scale", type=float, default=None, help="simulated seconds per real second")
    run.add_argument("--truth", default=None, help="write the ground-truth timeline (JSON) here on exit")
    run.add_argument(
        "--show", type=float, default=None, metavar="SECONDS", help="print every machine's values this often"
    )
    run.add_argument("--opcua-security", choices=SECURITY_MODES, default="None", help="OPC UA security policy")
    run.add_argument(
        "--opcua-user",
        action="append",
        type=_user,
        default=None,
        metavar="NAME:PASSWORD",
        help="admit only these OPC UA users (repeatable; visible in the process list: test setups only)",
    )
    _add_modbus_options(run)
    run.add_argument("--opcua-cert-out", default=None, help="write the server certificate (DER) here for clients")
    run.add_argument(
        "--opcua-extra-namespaces",
        type=int,
        default=0,
        metavar="N",
        help="register N empty namespaces first: the simulator's lands at index 2+N (restart tests)",
    )
    run.add_argument("--extra-tags", type=int, default=0, metavar="N", help="N auxiliary tags per machine (load tests)")

    desc = commands.add_parser("describe", help="print node ids and the Modbus register map")
    desc.add_argument("--json", action="store_true", help="machine-readable output")
    desc.add_argument("--machines", nargs="+", default=None, help="machine ids (default: the default plant)")
    desc.add_argument("--scenario", default=None, help="describe the machines of this scenario")

    rec = commands.add_parser("record", help="write a labelled CSV of a scenario, without servers")
    rec.add_argument("--scenario", default=None, help="scenario YAML (default: the default plant, no faults)")
    rec.add_argument("--duration", type=_duration, required=True, help="simulated time to record, e.g. 7d")
    rec.add_argument("--out", required=True, help="CSV file to write (written to <out>.part, then renamed)")
    rec.add_argument("--step", type=_duration, default=None, help="sample interval (default: the scenario's, 1s)")
    rec.add_argument("--seed", type=int, default=None, help="seed when no scenario is given")
    rec.add_argument("--machines", nargs="+", default=None, help="machines when no scenario is given")
    rec.add_argument("--truth", default=None, help="also write the ground-truth timeline (JSON) here")

    commands.add_parser("faults", help="list the fault library: names, machines, signals affected")

    inject = commands.add_parser(
        "inject",
        help="inject or clear a fault in a running edge-sim run (from another terminal)",
        description="Inject or clear a fault in a running `edge-sim run` on this computer, through its control port.",
    )
    inject.add_argument("machine", help="machine id, e.g. pump-1")
    inject.add_argument("fault", nargs="?", help="fault name (edge-sim faults), or the protocol fault kind")
    inject.add_argument("--severity", type=float, default=1.0, help="0-1, default 1 (full strength)")
    inject.add_argument(
        "--progression", choices=[p.value for p in Progression], default=None, help="default: the fault's own"
    )
    inject.add_argument("--signal", default=None, help="the signal of a sensor fault (sensor_drift, ...)")
    inject.add_argument(
        "--clear",
        nargs="?",
        const=_EVERY_FAULT,
        default=None,
        metavar="FAULT",
        help="end FAULT (or every fault) on the machine now",
    )
    inject.add_argument(
        "--protocol", choices=["opcua", "modbus"], default=None, help="a protocol fault (the wire, not the machine)"
    )
    inject.add_argument("--code", default=None, help="protocol fault: exception or status code")
    inject.add_argument("--latency", default=None, help="protocol fault latency, e.g. 500ms")
    inject.add_argument("--offset", default=None, help="protocol fault clock_offset, e.g. -1h")
    inject.add_argument("--probability", type=float, default=1.0, help="protocol fault: chance per request")
    inject.add_argument(
        "--control",
        type=_address,
        default=(CONTROL_HOST, DEFAULT_CONTROL_PORT),
        metavar="HOST:PORT",
        help=f"where edge-sim run listens for control (default {CONTROL_HOST}:{DEFAULT_CONTROL_PORT})",
    )

    check = commands.add_parser("check", help="check scenario files without running them")
    check.add_argument("scenarios", nargs="+", help="scenario YAML files")
    return parser


def _add_modbus_options(run: argparse.ArgumentParser) -> None:
    run.add_argument("--modbus-framing", choices=FRAMINGS, default="tcp", help="tcp, or RTU frames over TCP")
    run.add_argument(
        "--modbus-serial",
        default=None,
        metavar="DEVICE",
        help="serve Modbus RTU on this serial device (19200 8N1) instead of Modbus TCP",
    )
    run.add_argument(
        "--modbus-byte-order",
        choices=BYTE_ORDERS,
        default="ABCD",
        help="byte order of the float32 input registers (ABCD big-endian; CDAB swaps the words)",
    )


def _address(text: str) -> tuple[str, int]:
    try:
        return parse_address(text)
    except SimulatorError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def _user(text: str) -> tuple[str, str]:
    name, sep, password = text.partition(":")
    if not sep or not name or not password:
        raise argparse.ArgumentTypeError("write NAME:PASSWORD, e.g. operator:s3cret")
    return name, password


def _duration(text: str) -> float:
    try:
        seconds = parse_duration(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None
    if seconds <= 0:
        raise argparse.ArgumentTypeError(f"{text} is not positive; write e.g. 7d, 12h, 1s")
    return seconds


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
    if args.clear is not None and args.clear != _EVERY_FAULT:
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
