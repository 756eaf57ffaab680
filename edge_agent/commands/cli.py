"""``edge-agent``: run, demo, check-config, ingest.

Exit codes: 0 success, 1 a run-time failure (e.g. a machine failed in ``run --once``),
2 a configuration or usage error.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import math
import signal
import sys
from collections.abc import Callable, Coroutine
from typing import Any

from edge_agent import __version__
from edge_agent.core import memory  # memory first: it limits OpenBLAS threads before numpy loads
from edge_agent.core.errors import ConfigError
from edge_agent.runtime.cleartext import cleartext_credentials
from edge_agent.runtime.config import AgentConfig
from edge_agent.runtime.loader import load_config

log = logging.getLogger("edge_agent")

EXAMPLES = """\
examples:
  edge-agent demo                          simulated machines, live values in the terminal
  edge-agent demo --mqtt 127.0.0.1:1883    ... and publish them to a local broker
  edge-agent check-config config.yaml      validate a config without connecting anywhere
  edge-agent run config.yaml               poll the machines and publish to MQTT
  edge-agent run config.yaml --once        poll every machine once, print, exit
  edge-agent ingest config.yaml            MQTT -> InfluxDB bridge
  edge-agent doctor config.yaml            check machines, broker and database; print fixes
  edge-agent certs list                    OPC UA server certificates: trusted, rejected (then certs trust FP)
  edge-agent config schema --out schema.json   JSON Schema for editor completion
"""


def _setup_logging(level: str = "INFO") -> None:
    """Coloured lines on a terminal, plain when piped, JSON under systemd (see edge_agent/commands/logs.py)."""
    from edge_agent.commands.logs import setup_logging

    setup_logging(level)


def _run_until_signal(main: Callable[[asyncio.Event], Coroutine[Any, Any, None]]) -> None:
    """Run ``main(stop)`` and set ``stop`` on SIGINT or SIGTERM, so shutdown is always clean."""

    async def wrapper() -> None:
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for signum in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(signum, stop.set)
        await main(stop)

    asyncio.run(wrapper())


def _load(path: str) -> AgentConfig:
    try:
        return load_config(path)
    except ConfigError as exc:
        print(f"error: {exc}", file=sys.stderr)
        raise SystemExit(2) from None


def cmd_check_config(args: argparse.Namespace) -> int:
    """Validate without connecting to anything."""
    config = _load(args.config)
    print(f"{args.config}: OK")
    for machine in config.machines:
        where = getattr(machine, "endpoint", None) or f"{getattr(machine, 'host', '?')}:{getattr(machine, 'port', '?')}"
        state = "" if machine.enabled else " (disabled)"
        tags = f"{len(machine.tags)} tag(s) every {machine.interval:g} s"
        print(f"  machine {machine.id}: {machine.type} {where}, {tags}{state}")
    print(f"  mqtt: {f'{config.mqtt.host}:{config.mqtt.port}' if config.mqtt else 'not configured (no publishing)'}")
    influx = config.influxdb
    print(f"  influxdb: {f'v{influx.version} at {influx.url}' if influx else 'not configured (ingest unavailable)'}")
    alerts = config.alerts
    plan = "not configured (no alerts)" if alerts is None else alerts.learning_plan() if alerts.enabled else "off"
    print(f"  alerts: {plan}")
    for warning in cleartext_credentials(config):
        print(f"warning: {warning}")
    return 0


def _warn_cleartext(path: str, config: AgentConfig, *, influxdb: bool) -> None:
    """Once at start: credentials this command will send unencrypted (see runtime/cleartext.py)."""
    for warning in cleartext_credentials(config, influxdb=influxdb):
        log.warning("%s: %s", path, warning)


def cmd_run(args: argparse.Namespace) -> int:
    """Poll the configured machines until stopped (or once)."""
    config = _load(args.config)
    _setup_logging(config.logging.level)
    if args.once:
        return _run_once(config)
    _warn_cleartext(args.config, config, influxdb=config.outbox.deliver_to == "influxdb")
    memory.limit_arenas()  # before any thread starts: see edge_agent/core/memory.py
    from edge_agent.runtime.agent import Agent
    from edge_agent.web.history import HistoryBuffer

    web = config.web if config.web is not None and config.web.enabled else None
    history = HistoryBuffer()
    try:
        agent = Agent(config, extra_sinks=[history] if web else [])
    except ConfigError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    if web is not None:
        # Only with a status page: it brings aiohttp and prometheus-client and their RSS
        # (docs/models.md, Footprint). Imported here, not on the event loop.
        from edge_agent.web import StatusServer
    memory.release_free_memory()  # what the imports and the config parsing left behind

    async def main(stop: asyncio.Event) -> None:
        if web is None:
            await agent.run(stop)
            return
        page = StatusServer(agent, history, web, alerts=agent.alert_board if agent.alerts else None)
        try:
            await page.start()
        except OSError as exc:
            print(f"error: {args.config}: {exc}", file=sys.stderr)
            raise SystemExit(2) from None
        try:
            await agent.run(stop)
        finally:
            await page.close()

    try:
        _run_until_signal(main)
    except ConfigError as exc:  # e.g. an outbox file another agent holds, found at start
        print(f"error: {exc}", file=sys.stderr)
        return 2
    return 0


def _run_once(config: AgentConfig) -> int:
    from edge_agent.commands.live_view import format_value
    from edge_agent.runtime.agent import poll_once

    results = asyncio.run(poll_once(config))
    failed = 0
    for machine, outcome in results:
        if isinstance(outcome, str):
            failed += 1
            print(f"{machine.id}: FAILED: {outcome}")
            continue
        print(f"{machine.id}: {len(outcome.samples)} tag(s), {outcome.good_count} good")
        for sample in outcome.samples:
            print(f"  {sample.tag:<24} {format_value(sample)}")
    return 1 if failed else 0


def cmd_demo(args: argparse.Namespace) -> int:
    """Simulated machines and the agent in one process."""
    _setup_logging("WARNING" if not args.verbose else "INFO")
    from edge_agent.commands.demo import run_demo

    mqtt = None
    if args.mqtt:
        host, port = args.mqtt
        mqtt = {"host": host, "port": port}

    from edge_agent.web import WebConfig

    web = None
    if not args.no_web:
        host, port = args.web
        web = WebConfig(host=host, port=port)

    async def main(stop: asyncio.Event) -> None:
        if args.duration:
            asyncio.get_running_loop().call_later(args.duration, stop.set)
        await run_demo(stop, mqtt=mqtt, seed=args.seed, web=web)

    _run_until_signal(main)
    return 0


def cmd_ingest(args: argparse.Namespace) -> int:
    """The MQTT -> InfluxDB bridge."""
    config = _load(args.config)
    if config.mqtt is None or config.influxdb is None:
        missing = " and ".join(k for k, v in (("mqtt", config.mqtt), ("influxdb", config.influxdb)) if v is None)
        print(
            f"error: {args.config}: ingest needs the {missing} section(s). Fix: add them (see config.example.yaml)",
            file=sys.stderr,
        )
        return 2
    _setup_logging(config.logging.level)
    _warn_cleartext(args.config, config, influxdb=True)
    from edge_agent.ingest.bridge import run_ingest

    async def main(stop: asyncio.Event) -> None:
        await run_ingest(config, stop)

    _run_until_signal(main)
    return 0


def cmd_doctor(args: argparse.Namespace) -> int:
    """Check the config, each machine, the broker and InfluxDB; print the fix for each failure."""
    config = _load(args.config)
    print(f"PASS  config {args.config}: {len(config.machines)} machine(s)")
    _setup_logging("ERROR")
    from edge_agent.commands.doctor import render, run_checks

    checks = asyncio.run(run_checks(config))
    print(render(checks))
    return 0 if all(c.ok for c in checks) else 1


def cmd_config_schema(args: argparse.Namespace) -> int:
    """JSON Schema of the config file, e.g. for VS Code's YAML extension (``# yaml-language-server: $schema=``)."""
    import json

    schema = AgentConfig.model_json_schema()
    schema["$schema"] = "https://json-schema.org/draft/2020-12/schema"
    schema["title"] = "edge-agent configuration"
    text = json.dumps(schema, indent=2) + "\n"
    if args.out:
        from pathlib import Path

        Path(args.out).write_text(text, encoding="utf-8")
        print(f"wrote {args.out}")
    else:
        sys.stdout.write(text)
    return 0


def _host_and_port(text: str, *, port_only: bool, default_port: int, lowest_port: int) -> tuple[str, int]:
    """'host:port', 'host', '[v6]:port' (and for ``port_only`` a bare 'port') into a checked pair."""
    if not text or not text.isprintable() or any(c.isspace() for c in text):
        raise argparse.ArgumentTypeError("write HOST:PORT without spaces, e.g. 127.0.0.1:8080")
    if text.startswith("["):
        host, bracket, rest = text[1:].partition("]")
        if not bracket or (rest and not rest.startswith(":")):
            raise argparse.ArgumentTypeError("write an IPv6 address in brackets, e.g. [::1]:8080")
        port = rest[1:]
    elif text.count(":") > 1:
        raise argparse.ArgumentTypeError("write an IPv6 address in brackets, e.g. [::1]:8080")
    elif ":" in text or not port_only:
        host, _, port = text.partition(":")
    else:
        host, port = "", text
    if not port:
        number = default_port
    elif port.isdigit() and lowest_port <= int(port) <= 65535:
        number = int(port)
    else:
        raise argparse.ArgumentTypeError(f"the port must be a number from {lowest_port} to 65535")
    if "@" in host or "/" in host:
        raise argparse.ArgumentTypeError("write a host name or address only (no user@, no URL)")
    return host or "127.0.0.1", number


def _broker_address(text: str) -> tuple[str, int]:
    """``demo --mqtt HOST[:PORT]``."""
    return _host_and_port(text, port_only=False, default_port=1883, lowest_port=1)


def _page_address(text: str) -> tuple[str, int]:
    """``demo --web [HOST:]PORT``: loopback only, since the demo's page has no login and can inject faults."""
    from edge_agent.web.config import is_loopback

    host, port = _host_and_port(text, port_only=True, default_port=8080, lowest_port=0)
    if not is_loopback(host):
        raise argparse.ArgumentTypeError(
            f"{host} can be reached from other computers, and the demo's page has no login while it can inject "
            f"faults. Use --web 127.0.0.1:{port} (from another computer: ssh -L {port}:127.0.0.1:{port} THIS_HOST), "
            "or `edge-agent run` with a web: section that sets a login"
        )
    return host, port


def _seconds(text: str) -> float:
    """``demo --duration``: a finite number of seconds, not negative."""
    try:
        value = float(text)
    except ValueError:
        value = math.nan
    if not math.isfinite(value) or value < 0:
        raise argparse.ArgumentTypeError("write a number of seconds, 0 or more (0 runs until Ctrl+C)")
    return value


# Commands whose parser needs none of the optional command modules (model, discover, certs).
# ``run`` is the long-lived process: importing those modules would cost it RSS for command-line
# options it never uses (docs/models.md, Footprint).
LEAN_COMMANDS = frozenset({"run"})


def build_parser(extensions: bool = True) -> argparse.ArgumentParser:
    """The argument parser (also used to render --help in the docs).

    ``extensions=False`` leaves out the ``model``, ``discover`` and ``certs`` commands (and
    their imports); ``main`` does so only for a command in ``LEAN_COMMANDS``.
    """
    parser = argparse.ArgumentParser(
        prog="edge-agent",
        description="Read-only shop-floor edge agent: OPC UA / Modbus -> MQTT -> InfluxDB.",
        epilog=EXAMPLES,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--version", action="version", version=f"edge-agent {__version__}")
    sub = parser.add_subparsers(dest="command", required=True)

    run = sub.add_parser("run", help="poll the configured machines and publish")
    run.add_argument("config", help="path to the YAML config")
    run.add_argument(
        "--once", action="store_true", help="poll every machine once, print the values, exit (1 if any failed)"
    )
    run.set_defaults(func=cmd_run)

    demo = sub.add_parser("demo", help="simulated machines + agent, live values in the terminal")
    demo.add_argument("--mqtt", metavar="HOST[:PORT]", type=_broker_address, help="also publish to this MQTT broker")
    demo.add_argument(
        "--duration", type=_seconds, default=0, help="stop after this many seconds (default: run until Ctrl+C)"
    )
    demo.add_argument("--seed", type=int, default=1, help="simulation seed (same seed, same machines)")
    demo.add_argument("--verbose", action="store_true", help="show the agent's log lines too")
    demo.add_argument(
        "--web",
        metavar="[HOST:]PORT",
        type=_page_address,
        default="127.0.0.1:8080",
        help="status page address (default 127.0.0.1:8080; a busy port falls back to any free one)",
    )
    demo.add_argument("--no-web", action="store_true", help="no status page")
    demo.set_defaults(func=cmd_demo)

    check = sub.add_parser("check-config", help="validate a config file without connecting to anything")
    check.add_argument("config")
    check.set_defaults(func=cmd_check_config)

    ingest = sub.add_parser("ingest", help="subscribe to telemetry and write it to InfluxDB")
    ingest.add_argument("config")
    ingest.set_defaults(func=cmd_ingest)

    doctor = sub.add_parser("doctor", help="check config, machines, broker and InfluxDB; print fixes")
    doctor.add_argument("config")
    doctor.set_defaults(func=cmd_doctor)

    if extensions:
        from edge_agent.commands.model import register as register_model_commands

        register_model_commands(sub)

        from edge_agent.commands.discover import register as register_discover_commands

        register_discover_commands(sub)

        from edge_agent.commands.certs import register as register_certs_commands

        register_certs_commands(sub)

    config = sub.add_parser("config", help="configuration helpers")
    config_sub = config.add_subparsers(dest="config_command", required=True)
    schema = config_sub.add_parser("schema", help="write the config's JSON Schema (for editor completion)")
    schema.add_argument("--out", help="file to write (default: standard output)")
    schema.set_defaults(func=cmd_config_schema)
    return parser


def main(argv: list[str] | None = None) -> None:
    """Console entry point."""
    words = sys.argv[1:] if argv is None else argv
    args = build_parser(extensions=not (words and words[0] in LEAN_COMMANDS)).parse_args(argv)
    func: Callable[[argparse.Namespace], int] = args.func
    raise SystemExit(func(args))


if __name__ == "__main__":
    main()
