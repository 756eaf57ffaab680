"""What a protocol's discoverer gives ``edge-agent discover``, so the command itself knows no protocol.

A discoverer maps a device read-only before anyone writes its config: it owns its URL scheme,
its command-line options, the device conversation and what it found (a table, and for a
protocol that can write one, a machine section). The command owns the rest: parsing the URL
and the options, printing, writing ``--out``, and drawing progress, which it hands in as
``Progress`` because connectors import nothing above the core.
"""

from __future__ import annotations

import argparse
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Protocol


class DiscoverError(Exception):
    """A problem to report in one line; ``code`` is the exit code (1 unreachable, 2 bad input)."""

    def __init__(self, message: str, code: int = 2) -> None:
        super().__init__(message)
        self.code = code


class Bar(Protocol):
    """A progress bar with a known total."""

    def advance_to(self, done: int) -> None:
        """Show ``done`` of the total as finished."""
        ...

    def close(self) -> None:
        """Take the bar off the screen."""
        ...


class Progress(Protocol):
    """How a discoverer shows it is working; the command decides whether anything is drawn."""

    def status(self, text: str) -> None:
        """One self-overwriting line, for work without a known total (connecting, browsing)."""
        ...

    def clear(self) -> None:
        """Remove the status line."""
        ...

    def bar(self, total: int, desc: str, unit: str) -> Bar:
        """A bar for work whose total is known (a register range)."""
        ...


@dataclass(frozen=True)
class DiscoverRequest:
    """One ``discover`` run: the device's address, the time limit, and this protocol's own options."""

    url: str
    """The address as typed (stripped)."""
    host: str
    port: int | None
    """The port in the address, None when it names none (the protocol's default applies)."""
    timeout: float
    """Seconds each request (and the connect) may take."""
    options: Mapping[str, Any]
    """The values of the discoverer's ``options`` (None: not given)."""


@dataclass
class Discovery:
    """What a run found, for the command to print.

    Without ``section`` everything goes to standard output. With one, the table goes to stderr
    and the section to stdout (so ``discover ... > machine.yaml`` keeps just the YAML), or the
    section to the file ``out`` and the table to stdout.
    """

    columns: list[str]
    rows: list[list[str]]
    summary: str
    heading: list[str] = field(default_factory=list)
    """Lines printed before the table."""
    empty: str | None = None
    """Printed instead of the table when there are no rows (None: the bare header is printed)."""
    section: str | None = None
    """A machine section for the agent's config (YAML with comments)."""
    out: str | None = None
    """Where the section is to be written (None: standard output)."""


class Discoverer(Protocol):
    """One protocol's part of ``edge-agent discover`` (see the module text)."""

    schemes: tuple[str, ...]
    """URL schemes this protocol answers, the usual one first (e.g. ``("modbus", "modbus+tcp")``)."""
    url_form: str
    """The address as the help shows it, e.g. ``modbus://host[:port]``."""
    example_url: str
    """An address for the "Fix: write e.g." of a bad URL."""
    summary: str
    """What it does, for the subcommand list, e.g. ``dump Modbus registers``."""
    description: str
    """What it does, for the command's description (a clause joined with ", or ")."""
    examples: tuple[str, ...]
    """Example command lines for the help's epilog."""
    read_only: str
    """The services it uses, e.g. ``Modbus function codes 3 and 4``."""
    group: str
    """The title of its option group in the help."""
    options: tuple[str, ...]
    """Its options' ``dest`` names, in the order an error lists them when given for another protocol."""
    loggers: tuple[str, ...]
    """Library loggers silenced while it runs (their tracebacks are not for an operator)."""

    def add_arguments(self, group: argparse._ArgumentGroup) -> None:
        """Add its options (default None each, so a stray one can be told apart) to the help group."""
        ...

    async def discover(self, request: DiscoverRequest, progress: Progress) -> Discovery:
        """Check the options, talk to the device read-only, and say what was found.

        Raises ``DiscoverError`` with the fix: code 2 for bad options (before any network
        traffic), code 1 when the device cannot be reached or stops answering.
        """
        ...
