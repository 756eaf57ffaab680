"""A real plant for the status page: the agent polling simulators, its history, a small alert engine.

Nothing of the project is mocked. The alerts provider is a small real one written here (a
vibration threshold read from the history) that implements the same ``AlertsProvider`` protocol
the alert engine does, so page tests do not wait for a model to learn. Also here: scraping
``/metrics`` and the browser the page tests drive.
"""

from __future__ import annotations

import itertools
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import aiohttp
from playwright.async_api import ViewportSize
from prometheus_client.parser import text_string_to_metric_families

from edge_agent.alerts.board import AlertBoard
from edge_agent.commands.demo import machine_faults
from edge_agent.runtime.agent import Agent
from edge_agent.runtime.config import AgentConfig
from edge_agent.web import StatusServer
from edge_agent.web.history import HistoryBuffer
from simulators import Simulation

ARTIFACTS = Path(__file__).resolve().parents[2] / "test-artifacts"
POLL_INTERVAL = 0.2
VIBRATION_LIMIT = 4.5
"""mm/s RMS: the ISO 10816 zone C boundary for small machines; the healthy simulated pump runs near 1.3."""


class VibrationAlerts:
    """A tiny real alert engine: an alert while a machine's vibration is above a limit.

    It tells its alerts as schema-1 events, the way ``edge_agent.alerts`` does (raised,
    acknowledged, cleared; ``summary``, ``signals``, ``hint``), to an ``AlertBoard``, which is what
    the page reads. It looks at the newest values in the HistoryBuffer whenever the page asks.
    """

    def __init__(self, history: HistoryBuffer, limit: float = VIBRATION_LIMIT) -> None:
        self.history = history
        self.limit = limit
        self.board = AlertBoard(self._acknowledge)
        self._ids = itertools.count(1)
        self._open: dict[str, dict[str, Any]] = {}

    def _raise(self, machine: str, tag: str, value: float) -> dict[str, Any]:
        now = datetime.now(UTC).isoformat(timespec="seconds")
        return {
            "schema": 1,
            "event": "raised",
            "alert_id": f"{machine}-{next(self._ids)}",
            "machine": machine,
            "active": True,
            "severity": "warning",
            "acknowledged": False,
            "acknowledged_by": None,
            "since": now,
            "at": now,
            "summary": f"{tag} up: {value:.1f} mm/s, above the {self.limit} mm/s limit",
            "signals": [{"signal": tag, "percent": 100.0, "sigmas": 9.9, "pattern": "up"}],
            "hint": {
                "cause": "imbalance, misalignment or a worn bearing",
                "action": "check the coupling and the bearing; balance the rotor",
                "confidence": "low: a fixed limit, not a learned normal",
            },
        }

    def _update(self) -> None:
        for machine in self.history.machines():
            for tag, sample in self.history.latest(machine).items():
                if not tag.startswith("vibration") or not isinstance(sample.value, float):
                    continue
                high = sample.value > self.limit
                if high and machine not in self._open:
                    self._open[machine] = self._raise(machine, tag, sample.value)
                    self.board.record(self._open[machine])
                elif not high and machine in self._open:
                    at = datetime.now(UTC).isoformat(timespec="seconds")
                    self.board.record(self._open.pop(machine) | {"event": "cleared", "active": False, "at": at})

    def active(self) -> list[dict[str, Any]]:
        self._update()
        return self.board.active()

    def recent(self) -> list[dict[str, Any]]:
        self._update()
        return self.board.recent()

    async def acknowledge(self, machine: str, alert_id: str, by: str) -> bool:
        return await self.board.acknowledge(machine, alert_id, by)

    async def _acknowledge(self, machine: str, by: str) -> bool:
        """The engine's side, as ``AlertSink.acknowledge``: emit an ``acknowledged`` event."""
        alert = self._open.get(machine)
        if alert is None or alert["acknowledged"]:
            return False
        alert |= {"event": "acknowledged", "acknowledged": True, "acknowledged_by": by}
        self.board.record(alert)
        return True


@dataclass
class Plant:
    """The simulation and the agent polling it, with the history sink the page reads."""

    sim: Simulation
    agent: Agent
    history: HistoryBuffer

    async def inject(self, machine: str, fault: str) -> None:
        """The demo's injector: the real simulator fault, at full strength at once."""
        self.sim.inject_fault(machine, fault, severity=1.0, progression="sudden")

    def fault_choices(self) -> dict[str, list[str]]:
        """Machine faults (not sensor faults) each machine's kind can have."""
        return machine_faults(self.sim)

    def tags(self, machine: str) -> list[str]:
        """The tags the agent reads from a machine, in config order."""
        return [tag.name for tag in self.agent.config.machine(machine).tags]

    def polls(self) -> dict[str, int]:
        return {p.machine.id: p.stats.polls for p in self.agent.pollers}


def fast(config: AgentConfig) -> AgentConfig:
    data = config.model_dump(mode="json", exclude_unset=True)
    for machine in data["machines"]:
        machine["interval"] = POLL_INTERVAL
    return AgentConfig.model_validate(data)


StartServer = Callable[..., Awaitable[StatusServer]]
"""``start_server(alerts=..., inject=..., **web_keys)``: a StatusServer on a free port (fixture)."""

CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
PANEL: ViewportSize = {"width": 1024, "height": 600}
PHONE: ViewportSize = {"width": 390, "height": 844}


Samples = dict[tuple[str, tuple[tuple[str, str], ...]], float]


async def scrape(url: str) -> Samples:
    async with aiohttp.ClientSession() as http, http.get(url + "metrics") as response:
        assert response.status == 200
        assert response.headers["Content-Type"].startswith("text/plain; version=0.0.4")
        text = await response.text()
    return {
        (sample.name, tuple(sorted(sample.labels.items()))): sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
    }


def machine(name: str, machine_id: str) -> tuple[str, tuple[tuple[str, str], ...]]:
    return name, (("machine", machine_id),)
