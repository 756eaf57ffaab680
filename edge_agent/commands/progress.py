"""Progress bars for long command-line work (train, evaluate; later discover and backlog replay).

A bar helps a person at a terminal who waits for a day of data to be read. Anywhere else it is
noise: carriage returns in a log file, thousands of lines in the journal, broken JSON lines for
Loki. So a bar is drawn only when stderr is a terminal, the process is not run by systemd, logs
are not JSON (``EDGE_AGENT_LOG_FORMAT=json``), and nobody asked for quiet (``--no-progress`` or
``EDGE_AGENT_NO_PROGRESS=1``). Otherwise the same calls do nothing, so callers never branch.

    with progress(total=len(files), desc="test files", unit="file") as bar:
        for f in files:
            ...
            bar.update(1)
"""

from __future__ import annotations

import io
import os
import sys
from collections.abc import Iterable, Iterator, Mapping
from typing import Any, TextIO, TypeVar

from tqdm import tqdm

from edge_agent.commands.logs import under_systemd

T = TypeVar("T")

_forced_off = False


def disable() -> None:
    """Turn bars off for the rest of this process (the ``--no-progress`` flag)."""
    global _forced_off  # noqa: PLW0603 - one switch for the whole command-line process
    _forced_off = True


def wanted(stream: TextIO | None = None, environ: Mapping[str, str] | None = None) -> bool:
    """Whether a bar should be drawn on ``stream`` (stderr by default); see the module text."""
    env = os.environ if environ is None else environ
    out = sys.stderr if stream is None else stream
    if _forced_off or env.get("EDGE_AGENT_NO_PROGRESS", "") not in ("", "0"):
        return False
    if under_systemd(env) or env.get("EDGE_AGENT_LOG_FORMAT", "").lower() == "json":
        return False
    isatty = getattr(out, "isatty", None)
    return bool(isatty and isatty())


def progress(
    iterable: Iterable[T] | None = None,
    *,
    total: float | None = None,
    desc: str = "",
    unit: str = "it",
    stream: TextIO | None = None,
) -> tqdm[Any]:
    """A tqdm bar on stderr, or a silent stand-in when bars are not wanted (same methods either way)."""
    out = sys.stderr if stream is None else stream
    draw = wanted(out)
    width, height = _size(out) if draw else (0, 0)
    return tqdm(
        iterable,
        total=total,
        desc=desc,
        unit=unit,
        file=out,
        disable=not draw,
        leave=False,
        ncols=width or 80,
        nrows=height or 20,
        dynamic_ncols=width > 0,
        unit_scale=True,
        mininterval=0.25,
    )


def _size(stream: TextIO) -> tuple[int, int]:
    """The terminal's (columns, lines); 0 when it does not say (a serial console, a fresh pty).

    tqdm would draw nothing at all on a terminal that reports 0 x 0, so the caller falls back to 80 x 20.
    """
    try:
        size = os.get_terminal_size(stream.fileno())
    except (OSError, ValueError, io.UnsupportedOperation):
        return 0, 0
    return size.columns, size.lines


def track(iterable: Iterable[T], *, total: float | None = None, desc: str = "", unit: str = "it") -> Iterator[T]:
    """Iterate with a bar (closed at the end, also on an error)."""
    bar = progress(total=total, desc=desc, unit=unit)
    try:
        for item in iterable:
            yield item
            bar.update(1)
    finally:
        bar.close()
