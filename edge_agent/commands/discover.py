"""``edge-agent discover URL``: map a device read-only before writing its config.

The protocol is chosen by the URL's scheme, and everything protocol-specific (its options, the
device conversation, what it found) is the protocol's discoverer in ``connectors/<protocol>/
discover.py``, found through ``connectors.PROTOCOLS``. This module is the front end they share:
the command line, the URL, the output (a table; a machine section to stdout or ``--out``) and
the progress display, which connectors cannot draw themselves (they import only the core).

- ``discover opc.tcp://host:port[/path]`` browses from the Objects folder, shows every variable
  (node id, browse path, data type, unit, value) and writes a machine section for the config.
- ``discover modbus://host[:port] --unit 1 --range 0-199`` reads a register range and shows each
  address as int16, uint16 and float32 in the four byte orders.

Exit codes as for every subcommand: 0 done, 1 the device could not be reached, 2 bad input.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any, TextIO
from urllib.parse import SplitResult, urlsplit

from connectors import PROTOCOLS
from connectors.discovery import Discoverer, DiscoverError, DiscoverRequest, Discovery
from edge_agent.commands.progress import progress as bar_for
from edge_agent.commands.progress import wanted

_log = logging.getLogger(__name__)


def _discoverers() -> list[Discoverer]:
    return [entry.discoverer for entry in PROTOCOLS.values()]


def parse_url(url: str, discoverers: Sequence[Discoverer]) -> tuple[Discoverer, SplitResult]:
    """The discoverer for a device URL and its parts, or ``DiscoverError`` with the fix."""
    fix = "Fix: write e.g. " + " or ".join(d.example_url for d in discoverers)
    try:
        parts = urlsplit(url.strip())
        port = parts.port
    except ValueError as exc:
        raise DiscoverError(f"cannot read the address {url!r} ({exc}). {fix}") from None
    scheme = parts.scheme.lower()
    chosen = next((d for d in discoverers if scheme in d.schemes), None)
    if chosen is None:
        starts = " or ".join(f"{d.schemes[0]}://" for d in discoverers)
        raise DiscoverError(f"unknown address {url!r}: it must start with {starts}. {fix}")
    if not parts.hostname:
        raise DiscoverError(f"the address {url!r} names no host. {fix}")
    if port == 0:
        raise DiscoverError(f"the address {url!r} has port 0. {fix}")
    if parts.username or parts.password:
        raise DiscoverError(
            f"the address {url!r} holds a user name or password. Fix: remove user:password@ from it "
            "(only anonymous sessions are supported by discover for now)"
        )
    return chosen, parts


class _Progress:
    """Progress on stderr, drawn only where a bar is wanted (``edge_agent.commands.progress.wanted``).

    Work without a known total (connecting, browsing) gets a line that counts, not a bar; work
    whose total is known (a register range) gets a real bar.
    """

    def __init__(self, stream: TextIO = sys.stderr) -> None:
        self._stream = stream
        self._on = wanted(stream)

    def status(self, text: str) -> None:
        if self._on:
            self._stream.write(f"\r\x1b[K{text}")
            self._stream.flush()

    def clear(self) -> None:
        if self._on:
            self._stream.write("\r\x1b[K")
            self._stream.flush()

    def bar(self, total: int, desc: str, unit: str) -> _Bar:
        return _Bar(total, desc, unit)


class _Bar:
    """A tqdm bar that is told how far the work is, not by how much it moved."""

    def __init__(self, total: int, desc: str, unit: str) -> None:
        self._bar = bar_for(total=total, desc=desc, unit=unit)

    def advance_to(self, done: int) -> None:
        self._bar.update(done - self._bar.n)

    def close(self) -> None:
        self._bar.close()


def _table(rows: Sequence[Sequence[str]], header: Sequence[str]) -> str:
    widths = [max(len(str(r[i])) for r in [header, *rows]) for i in range(len(header))]
    lines = ["  ".join(str(c).ljust(w) for c, w in zip(row, widths, strict=True)).rstrip() for row in [header, *rows]]
    lines.insert(1, "  ".join("-" * w for w in widths))
    return "\n".join(lines)


def _emit(found: Discovery) -> None:
    """Print what was found; a machine section goes to stdout (table on stderr) or to its file."""
    table = _table(found.rows, found.columns) if found.rows or found.empty is None else found.empty
    if found.section is None:
        for line in found.heading:
            print(line)
        print(table)
        print(f"\n{found.summary}")
    elif found.out:
        try:
            Path(found.out).write_text(found.section, encoding="utf-8")
        except OSError as exc:
            raise DiscoverError(f"cannot write {found.out}: {exc.strerror}. Fix: choose a writable path") from None
        print(table)
        print(f"\n{found.summary}; wrote {found.out}")
    else:
        # The table goes to stderr, so `discover ... > machine.yaml` keeps just the YAML.
        print(table, file=sys.stderr)
        print(f"\n{found.summary}", file=sys.stderr)
        sys.stdout.write(found.section)


def _checked(args: argparse.Namespace, discoverers: Sequence[Discoverer]) -> tuple[Discoverer, DiscoverRequest]:
    """The URL's discoverer and its request, after checking the options fit it."""
    if not args.timeout > 0:
        raise DiscoverError(f"--timeout {args.timeout:g} is not positive. Fix: use e.g. --timeout 5")
    chosen, parts = parse_url(args.url, discoverers)
    for other in discoverers:
        wrong = [f"--{name}" for name in other.options if getattr(args, name) is not None]
        if other is not chosen and wrong:
            raise DiscoverError(f"{', '.join(wrong)} only apply to {other.schemes[0]}:// addresses. Fix: remove them")
    options = {name: getattr(args, name) for name in chosen.options}
    request = DiscoverRequest(args.url.strip(), parts.hostname or "", parts.port, args.timeout, options)
    return chosen, request


def cmd_discover(args: argparse.Namespace) -> int:
    """Dispatch by URL scheme; every expected failure is one line on stderr."""
    discoverers = _discoverers()
    for discoverer in discoverers:
        for noisy in discoverer.loggers:
            logging.getLogger(noisy).setLevel(logging.CRITICAL)
    try:
        chosen, request = _checked(args, discoverers)
        _emit(asyncio.run(chosen.discover(request, _Progress())))
    except DiscoverError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return exc.code
    except KeyboardInterrupt:
        print("error: interrupted", file=sys.stderr)
        return 1
    except Exception as exc:  # noqa: BLE001 - an operator tool prints one line, never a traceback
        _log.debug("discover failed", exc_info=True)
        print(f"error: discovery failed: {type(exc).__name__}: {exc}", file=sys.stderr)
        return 1
    return 0


def _epilog(discoverers: Sequence[Discoverer]) -> str:
    examples = "".join(f"  {line}\n" for d in discoverers for line in d.examples)
    services = ", ".join(d.read_only for d in discoverers)
    return f"examples:\n{examples}\nRead-only: {services}. Exit 0 done, 1 unreachable, 2 bad input.\n"


def register(subparsers: Any) -> None:
    """Add ``discover`` to the CLI's subcommands, with each protocol's options in its own group."""
    discoverers = _discoverers()
    parser = subparsers.add_parser(
        "discover",
        help=" or ".join(d.summary for d in discoverers) + ", to write a machine's config",
        description="Map a device read-only: " + ", or ".join(d.description for d in discoverers) + ".",
        epilog=_epilog(discoverers),
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("url", help=" or ".join(d.url_form for d in discoverers))
    parser.add_argument("--timeout", type=float, default=5.0, help="seconds each request may take (default 5)")
    for discoverer in discoverers:
        discoverer.add_arguments(parser.add_argument_group(discoverer.group))
    parser.set_defaults(func=cmd_discover)


def main(argv: list[str] | None = None) -> None:
    """``python -m edge_agent.commands.discover URL ...``: the same command without the rest of the CLI."""
    parser = argparse.ArgumentParser(prog="edge-agent")
    register(parser.add_subparsers(dest="command", required=True))
    args = parser.parse_args(["discover", *(sys.argv[1:] if argv is None else argv)])
    raise SystemExit(args.func(args))


if __name__ == "__main__":
    main()
