"""The command line of ``edge-sim``: every subcommand, option and its check, in one parser.

``simulators.cli`` runs what the parser read; keeping the two apart lets tests and the deploy
checks inspect the options without starting anything.
"""

from __future__ import annotations

import argparse

from simulators.control import CONTROL_HOST, DEFAULT_CONTROL_PORT, parse_address
from simulators.durations import parse_duration
from simulators.errors import SimulatorError
from simulators.faults import Progression
from simulators.modbus_server import FRAMINGS
from simulators.opcua_security import SECURITY_MODES
from simulators.register_map import BYTE_ORDERS

EVERY_FAULT = "*"
"""What ``--clear`` stands for without a fault name: every fault of the machine."""


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
        const=EVERY_FAULT,
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
