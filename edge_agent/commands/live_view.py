"""A terminal sink that shows the latest value of every tag: what the demo prints.

On a terminal it redraws a table in place; when the output is a pipe or file (tests, journald)
it prints one plain line per machine per refresh, so a log reader sees values change too.
"""

from __future__ import annotations

import asyncio
import sys
from datetime import UTC, datetime
from typing import TextIO

from edge_agent.core.origin import Origin
from edge_agent.core.samples import Batch, Quality, Sample


def format_value(sample: Sample) -> str:
    """A short human form of a sample's value with its unit, or its quality problem."""
    if sample.quality is Quality.BAD or sample.value is None:
        return f"BAD ({sample.reason})" if sample.reason else "BAD"
    value = sample.value
    text = f"{value:.3f}" if isinstance(value, float) else str(value)
    if sample.unit:
        text += f" {sample.unit}"
    if sample.quality is Quality.UNCERTAIN:
        text += " (uncertain)"
    return text


class LiveView:
    """Keeps the newest batch per machine and renders it every ``refresh`` seconds."""

    name = "live-view"

    def __init__(self, stream: TextIO | None = None, refresh: float = 1.0) -> None:
        self.stream = stream or sys.stdout
        self.refresh = refresh
        self.latest: dict[str, Batch] = {}
        self.states: dict[str, str] = {}
        self._task: asyncio.Task[None] | None = None
        self._tty = self.stream.isatty()

    async def start(self) -> None:
        """Start the refresh task."""
        self._task = asyncio.create_task(self._render_forever(), name="live-view")

    async def submit(self, batch: Batch, origin: Origin) -> None:
        """Remember the newest batch of the machine."""
        self.latest[batch.machine] = batch

    def machine_state_changed(self, origin: Origin, state: str, reason: str | None) -> None:
        """Show down machines with their reason."""
        self.states[origin.machine] = state if reason is None else f"{state}: {reason}"

    async def close(self) -> None:
        """Stop the refresh task."""
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)
            self._task = None

    def render(self) -> str:
        """The current view as text."""
        lines = []
        for machine in sorted(set(self.latest) | set(self.states)):
            state = self.states.get(machine, "connecting")
            batch = self.latest.get(machine)
            if batch is None or not state.startswith("up"):
                lines.append(f"{machine:<10} [{state}]")
                continue
            stamp = datetime.fromtimestamp(batch.polled_at_ns / 1e9, tz=UTC).strftime("%H:%M:%S")
            if self._tty:
                lines.append(f"{machine} [{state}] {stamp} UTC")
                lines.extend(f"    {s.tag:<22} {format_value(s)}" for s in batch.samples)
            else:
                values = "  ".join(f"{s.tag}={format_value(s)}" for s in batch.samples)
                lines.append(f"{stamp} {machine}: {values}")
        return "\n".join(lines)

    async def _render_forever(self) -> None:
        while True:
            await asyncio.sleep(self.refresh)
            text = self.render()
            if not text:
                continue
            if self._tty:
                self.stream.write("\x1b[H\x1b[2J" + text + "\n\n(Ctrl+C to stop)\n")
            else:
                self.stream.write(text + "\n")
            self.stream.flush()
