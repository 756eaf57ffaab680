"""The embedded default: simulated machines served in-process and the agent polling them.

Needs no broker and no database. Pump ``pump-1`` is read over OPC UA and press ``press-1``
over Modbus TCP, both from the bundled simulators on loopback ports, so a student sees both
protocols at work. With ``--mqtt HOST[:PORT]`` the agent publishes to that broker too.
"""

from __future__ import annotations

import asyncio
import logging
import tempfile
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

from connectors.opcua.own_cert import own_certificate
from connectors.opcua.pki import TrustStore
from edge_agent.commands.live_view import LiveView
from edge_agent.runtime.agent import Agent
from edge_agent.runtime.config import AgentConfig
from edge_agent.web import StatusServer, WebConfig
from edge_agent.web.history import HistoryBuffer
from simulators import Simulation
from simulators.faults import FAULT_KINDS

log = logging.getLogger(__name__)

DEMO_INTERVAL = "1s"

DEMO_ALERTS: dict[str, Any] = {
    "window": "20s",
    "hop": "5s",
    "learn_after": "150s",
    "cooldown": "30s",
    "state": {"signal": "state_code", "codes": {"0": "off", "1": "idle", "2": "running", "3": "setup"}},
}
"""Alert settings of the demo: a normal learned in 2.5 minutes, a fault shown within about a minute.

A plant would learn over a day or more (the default ``learn_after`` is 24 h); a student should
not have to wait that long to see the first alert.
"""


def demo_config(
    sim: Simulation,
    mqtt: dict[str, Any] | None = None,
    *,
    use_opcua: bool = True,
    alerts: dict[str, Any] | None = None,
    pki_dir: str | None = None,
) -> AgentConfig:
    """An agent config reading the first machine over OPC UA and the others over Modbus.

    Every machine also reports its operating state (``state_code``), so a model never learns or
    alerts on a stopped machine. ``use_opcua=False`` reads every machine over Modbus (for a
    simulation without OPC UA); ``alerts`` adds an ``alerts:`` section.

    OPC UA security follows the simulator: signed and encrypted (the default) when it serves a
    certificate, with the trust store in ``pki_dir`` (see ``trust_simulator``); else the
    explicit ``security: none`` a server without security needs.
    """
    machines: list[dict[str, Any]] = []
    for index, machine_id in enumerate(sim.machine_ids):
        signals = sim.signals(machine_id)
        if index == 0 and use_opcua:
            secure: dict[str, Any] = {"pki_dir": pki_dir} if pki_dir else {}
            machines.append(
                {
                    "id": machine_id,
                    "type": "opcua",
                    "endpoint": sim.opcua.endpoint,
                    "security": secure if sim.opcua.certificate is not None else {"policy": "None", "mode": "None"},
                    "interval": DEMO_INTERVAL,
                    "tags": [
                        {"name": name, "node": f"nsu={sim.opcua.namespace_uri};s={machine_id}.{name}", "unit": unit}
                        for name, unit in [*signals, ("state_code", "")]
                    ],
                }
            )
        else:
            machines.append(
                {
                    "id": machine_id,
                    "type": "modbus",
                    "host": "127.0.0.1",
                    "port": sim.modbus.port,
                    "unit_id": sim.modbus.unit_id(machine_id),
                    "interval": DEMO_INTERVAL,
                    "tags": [
                        *(
                            {"name": name, "table": "input", "address": 2 * i, "type": "float32", "unit": unit}
                            for i, (name, unit) in enumerate(signals)
                        ),
                        {"name": "state_code", "table": "holding", "address": 102, "type": "uint16"},
                    ],
                }
            )
    data: dict[str, Any] = {"site": {"name": "demo", "area": "lab", "line": "line-1"}, "machines": machines}
    if mqtt is not None:
        data["mqtt"] = mqtt
    if alerts is not None:
        data["alerts"] = alerts
    return AgentConfig.model_validate(data)


def trust_simulator(sim: Simulation, pki_dir: str) -> None:
    """Put the simulator's certificate in the demo's trust store, as an operator would with
    ``edge-agent certs trust``: the demo shows security on without a trust step to do first."""
    if sim.opcua.certificate is not None:
        TrustStore(pki_dir).save(sim.opcua.certificate, "trusted")


def machine_faults(sim: Simulation) -> dict[str, list[str]]:
    """The machine faults (not sensor faults, which need a signal) each simulated machine can have."""
    return {
        machine: sorted(n for n, k in FAULT_KINDS.items() if not k.sensor and sim.plant.kind(machine) in k.kinds)
        for machine in sim.machine_ids
    }


CLEAR_FAULTS = "(clear faults)"


async def run_demo(
    stop: asyncio.Event, mqtt: dict[str, Any] | None = None, seed: int = 1, web: WebConfig | None = None
) -> None:
    """Serve the simulated plant and run the agent against it until ``stop`` is set.

    The alert engine runs with ``DEMO_ALERTS`` and a model folder that lives only as long as
    the demo. With ``web`` the status page runs too, with an "Inject fault" control: a student
    injects a fault at full strength, watches the values change and the alert appear, then
    picks "(clear faults)" and sees the alert clear.
    """
    with tempfile.TemporaryDirectory(prefix="edge-agent-demo-") as models_dir:
        pki_dir = str(Path(models_dir) / "pki")
        # The agent's certificate (an RSA key) is made while the simulator starts, not after it.
        own = asyncio.create_task(asyncio.to_thread(own_certificate, pki_dir), name="demo:own-certificate")
        async with Simulation(seed=seed, opcua_port=0, modbus_port=0, opcua_security="Basic256Sha256") as sim:
            await own
            await asyncio.to_thread(trust_simulator, sim, pki_dir)
            config = demo_config(sim, mqtt, alerts={**DEMO_ALERTS, "data_dir": models_dir}, pki_dir=pki_dir)
            print(
                f"Simulated plant: OPC UA at {sim.opcua.endpoint} (Basic256Sha256, signed and encrypted), "
                f"Modbus TCP at 127.0.0.1:{sim.modbus.port}",
                flush=True,
            )
            print(
                f"Polling {', '.join(m.id for m in config.machines)} every {DEMO_INTERVAL}"
                + (f"; publishing to MQTT {config.mqtt.host}:{config.mqtt.port}" if config.mqtt else "")
                + f". Learning each machine's normal for {DEMO_ALERTS['learn_after']}, then alerts are on."
                + " Press Ctrl+C to stop.",
                flush=True,
            )
            history = HistoryBuffer()
            agent = Agent(config, extra_sinks=[LiveView(), history])
            if web is None or not web.enabled:
                await agent.run(stop)
            else:
                await _run_with_page(sim, agent, history, web, stop)
            if sim.write_count:
                log.error("demo: the simulators saw %d write request(s); the agent must never write", sim.write_count)


def fault_control(sim: Simulation) -> tuple[Callable[[str, str], Awaitable[None]], dict[str, list[str]]]:
    """The page's "Inject fault" control: an injector (full strength, at once) and its choices.

    Every machine's list starts with ``CLEAR_FAULTS``, which removes its faults again.
    """

    async def inject(machine: str, fault: str) -> None:
        if fault == CLEAR_FAULTS:
            sim.clear_fault(machine)
        else:
            sim.inject_fault(machine, fault, severity=1.0, progression="sudden")

    return inject, {machine: [CLEAR_FAULTS, *faults] for machine, faults in machine_faults(sim).items()}


async def _run_with_page(
    sim: Simulation, agent: Agent, history: HistoryBuffer, web: WebConfig, stop: asyncio.Event
) -> None:
    """The agent plus its status page; a busy port falls back to any free one."""
    inject, choices = fault_control(sim)

    def page_on(settings: WebConfig) -> StatusServer:
        return StatusServer(
            agent, history, settings, alerts=agent.alert_board, inject_fault=inject, fault_choices=choices
        )

    page = page_on(web)
    try:
        await page.start()
    except OSError as exc:
        if web.port == 0:
            raise
        log.warning("demo: %s; using any free port instead", exc)
        page = page_on(web.model_copy(update={"port": 0}))
        await page.start()
    print(f"Status page: {page.url}", flush=True)
    try:
        await agent.run(stop)
    finally:
        await page.close()
