"""``edge-sim``: run the simulated plant, or print its register map and node ids.

edge-sim run [--opcua-port 4840] [--modbus-port 5020] [--host 127.0.0.1] [--seed N]
edge-sim describe [--json] [--machines pump-1 press-1]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import signal
import sys
from collections.abc import Sequence

from simulators.errors import SimulatorError
from simulators.register_map import PlantDescription, describe
from simulators.simulation import Simulation


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
    run.add_argument("--host", default="127.0.0.1", help="address both servers bind (0.0.0.0 for the LAN)")
    run.add_argument("--seed", type=int, default=1, help="random seed; same seed, same values")
    run.add_argument("--interval", type=float, default=0.1, help="seconds between plant updates")
    run.add_argument("--machines", nargs="+", default=None, help="machine ids, kind before the last '-' (pump-2)")

    desc = commands.add_parser("describe", help="print node ids and the Modbus register map")
    desc.add_argument("--json", action="store_true", help="machine-readable output")
    desc.add_argument("--machines", nargs="+", default=None, help="machine ids (default: the default plant)")
    return parser


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


async def _serve(args: argparse.Namespace) -> None:
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    async with Simulation(
        seed=args.seed,
        machines=args.machines,
        update_interval=args.interval,
        opcua_port=args.opcua_port,
        modbus_port=args.modbus_port,
        host=args.host,
    ) as sim:
        if args.opcua_port is not None:
            print(f"OPC UA  {sim.opcua.endpoint}  (namespace {sim.opcua.namespace_uri})", flush=True)
        if args.modbus_port is not None:
            units = ", ".join(f"{m}={sim.modbus.unit_id(m)}" for m in sim.machine_ids)
            print(f"Modbus  {args.host}:{sim.modbus.port}  unit ids: {units}", flush=True)
        print("edge-sim running; Ctrl+C to stop", flush=True)
        await stop.wait()
    print(f"edge-sim stopped; client write requests seen: {sim.write_count}", flush=True)


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of ``edge-sim``; returns the exit code."""
    args = build_parser().parse_args(argv)
    try:
        if args.command == "describe":
            description = describe(args.machines)
            if args.json:
                print(json.dumps(description.to_dict(), indent=2, ensure_ascii=False))
            else:
                print(format_description(description))
            return 0
        asyncio.run(_serve(args))
    except SimulatorError as exc:
        print(f"edge-sim: {exc}", file=sys.stderr)
        return 2
    except OSError as exc:
        print(f"edge-sim: cannot listen: {exc}. Fix: choose another port or stop what uses it", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
