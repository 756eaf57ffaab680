"""The embedded default: simulated machines served in-process and the agent polling them.

Needs no broker and no database. Pump ``pump-1`` is read over OPC UA and press ``press-1``
over Modbus TCP, both from the bundled simulators on loopback ports, so a student sees both
protocols at work. With ``--mqtt HOST[:PORT]`` the agent publishes to that broker too.

The alert engine learns each machine's normal from hours of its running (``DEMO_ALERTS``), and
a student should not wait hours: ``fast_forward`` runs the same simulated machines through
their past in simulated time (a second or two) and the agent learns from that past as it
would from polls, while the live polls already show on the page. A normal learned from a few
minutes of live data does not hold: the plant's demand wanders over minutes and the
temperatures follow it over a quarter of an hour, so such a model raised alerts on healthy
machines within minutes and did not clear after a fault.
"""

from __future__ import annotations

import asyncio
import logging
import tempfile
import time
from collections.abc import Awaitable, Callable, Mapping
from pathlib import Path
from typing import Any

from connectors.opcua.own_cert import own_certificate
from connectors.opcua.pki import TrustStore
from edge_agent.alerts.config import AlertsConfig
from edge_agent.commands.live_view import LiveView
from edge_agent.core.durations import format_duration
from edge_agent.core.samples import Batch, Sample
from edge_agent.runtime.agent import Agent
from edge_agent.runtime.config import AgentConfig
from edge_agent.web import StatusServer, WebConfig
from edge_agent.web.history import HistoryBuffer
from models.model import learning_progress, windows_in
from models.operating_state import StateRule
from simulators import Simulation
from simulators.faults import FAULT_KINDS
from simulators.plant import Plant

log = logging.getLogger(__name__)

DEMO_INTERVAL = "1s"

DEMO_ALERTS: dict[str, Any] = {
    "window": "20s",
    "hop": "5s",
    "learn_after": "4h",
    "cooldown": "30s",
    "state": {"signal": "state_code", "codes": {"0": "off", "1": "idle", "2": "running", "3": "setup"}},
}
"""Alert settings of the demo: a normal learned from 4 h of running (2,880 windows), fast-forwarded.

Short windows every 5 s show a fault within seconds of its start. A plant would learn over a
day or more (the default ``learn_after`` is 24 h); the demo's 4 h are the machines' simulated
past (``fast_forward``), so a student waits seconds, not hours. Learned from 2 h, the models
raised alerts on healthy machines within the first hour of the demo for 3 of 8 seeds; from 3 h,
for 1 of 8; from 4 h, for none (simulated time, 8 seeds x 1 h).
"""

PAST_GAP_S = 60.0
"""The past ends this long before the live polls begin: longer than a window, so no window
holds readings of both (two runs of the plant, whose values do not join up)."""

PAST_LIMIT = 3.0
"""The past is at most this many times ``learn_after`` long (for a machine that hardly runs)."""


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


def fast_forward(seed: int, alerts: Mapping[str, Any], end_s: float | None = None) -> dict[str, list[Batch]]:
    """The simulated machines' past: what the agent learns each machine's normal from.

    The plant of ``seed`` (the same machines the demo serves) runs in simulated time, read once
    a second like the demo's polls, until each machine has the windows in its learned states
    that learning with the ``alerts`` settings needs (``models.model.learning_progress``, the
    agent's own rule), and no further: the past is learned, not scored. Each reading is a batch
    as a poll gives it (the signals and the state signal), stamped so the past ends ``PAST_GAP_S``
    before ``end_s`` (default: now). One to two seconds for 4 h of two machines: call it off the
    event loop.
    """
    config = AlertsConfig.model_validate({**alerts})
    if config.state is None or config.state.codes is None:
        raise ValueError("the demo's past needs a state signal with codes (the simulators' state_code)")
    rule = StateRule(config.state.signal, config.state.codes)
    window, hop = config.window, config.hop
    planned = windows_in(config.learn_after, hop)
    plant = Plant(seed)
    rows: dict[str, list[tuple[float, dict[str, float], int]]] = {machine: [] for machine in plant.machine_ids}
    counts: dict[str, dict[str, int]] = {machine: {} for machine in plant.machine_ids}
    next_end: dict[str, float] = {}
    stretch: dict[str, tuple[str, float]] = {}  # the state of the newest reading, and since when
    learning = set(plant.machine_ids)
    while learning and plant.time_s < PAST_LIMIT * config.learn_after:
        plant.step(1.0)
        t = plant.time_s
        for machine, reading in plant.readings().items():
            if machine not in learning:
                continue
            ends = next_end.setdefault(machine, t + window)
            closed = False
            while t >= ends:  # the windows this reading closes, cut as models.features.Windower cuts them
                state, since = stretch[machine]
                if since <= ends - window and state in config.learn_states:
                    counts[machine][state] = counts[machine].get(state, 0) + 1
                    closed = True
                ends += hop
            next_end[machine] = ends
            code = int(reading.state)
            rows[machine].append((t, dict(reading.values), code))
            state = rule.classify(code)
            if machine not in stretch or stretch[machine][0] != state:
                stretch[machine] = (state, t)
            if closed:
                have, need = learning_progress(counts[machine], config.learn_states, planned)
                if have >= need:
                    learning.discard(machine)
    # Whole seconds: the engine then cuts the windows on the same grid, without rounding at their ends.
    shift = round((time.time() if end_s is None else end_s) - PAST_GAP_S - plant.time_s)
    batches: dict[str, list[Batch]] = {}
    for machine, past in rows.items():
        batches[machine] = []
        for t, values, code in past:
            ns = int((t + shift) * 1e9)
            samples = (*(Sample(name, value, ns) for name, value in values.items()), Sample(rule.signal, code, ns))
            batches[machine].append(Batch(machine, samples, ns))
        past.clear()
    return batches


async def learn_past(agent: Agent, past: Mapping[str, list[Batch]]) -> None:
    """Hand the machines' past to the agent's alert engine, before its first poll.

    The engine learns from it as from polls (the page shows its progress), in its worker thread;
    the live polls queue behind it, so every machine's readings reach the engine in time order.
    """
    engine = agent.alerts
    if engine is None:
        return
    await engine.start()
    for poller in agent.pollers:
        for index, batch in enumerate(past.get(poller.machine.id, [])):
            await engine.submit(batch, poller.origin)
            if index % 2000 == 1999:
                await asyncio.sleep(0)  # let the simulator serve meanwhile (no poll runs before this returns)


async def _announce_learned(agent: Agent, started: float) -> None:
    """One terminal line per machine when its normal is learned: alerts are on from then."""
    engine = agent.alerts
    if engine is None:
        return
    waiting = [p.machine.id for p in agent.pollers if engine.config.for_machine(p.machine.id).enabled]
    while waiting:
        for machine in list(waiting):
            stats = engine.stats(machine)
            if stats.learned:
                waiting.remove(machine)
                print(
                    f"{machine}: normal learned (model {stats.model_version}) {time.monotonic() - started:.0f} s "
                    "after start; alerts are on",
                    flush=True,
                )
        await asyncio.sleep(0.5)


async def run_demo(
    stop: asyncio.Event, mqtt: dict[str, Any] | None = None, seed: int = 1, web: WebConfig | None = None
) -> None:
    """Serve the simulated plant and run the agent against it until ``stop`` is set.

    The alert engine runs with ``DEMO_ALERTS`` and a model folder that lives only as long as
    the demo. With ``web`` the status page runs too, with an "Inject fault" control: a student
    injects a fault at full strength, watches the values change and the alert appear, then
    picks "(clear faults)" and sees the alert clear.
    """
    started = time.monotonic()
    with tempfile.TemporaryDirectory(prefix="edge-agent-demo-") as models_dir:
        pki_dir = str(Path(models_dir) / "pki")
        # The agent's certificate (an RSA key) and the machines' past are made while the simulator
        # starts, not after it.
        own = asyncio.create_task(asyncio.to_thread(own_certificate, pki_dir), name="demo:own-certificate")
        history = asyncio.create_task(asyncio.to_thread(fast_forward, seed, DEMO_ALERTS), name="demo:past")
        async with Simulation(seed=seed, opcua_port=0, modbus_port=0, opcua_security="Basic256Sha256") as sim:
            await own
            await asyncio.to_thread(trust_simulator, sim, pki_dir)
            past = await history
            # Room in each machine's queue for its past and for the polls that arrive while it is learned.
            room = AlertsConfig().queue_rows + max(map(len, past.values()), default=0)
            alerts = {**DEMO_ALERTS, "data_dir": models_dir, "queue_rows": room}
            config = demo_config(sim, mqtt, alerts=alerts, pki_dir=pki_dir)
            print(
                f"Simulated plant: OPC UA at {sim.opcua.endpoint} (Basic256Sha256, signed and encrypted), "
                f"Modbus TCP at 127.0.0.1:{sim.modbus.port}",
                flush=True,
            )
            print(
                f"Polling {', '.join(m.id for m in config.machines)} every {DEMO_INTERVAL}"
                + (f"; publishing to MQTT {config.mqtt.host}:{config.mqtt.port}" if config.mqtt else "")
                + ". Learning each machine's normal from "
                + f"{format_duration(AlertsConfig.model_validate(DEMO_ALERTS).learn_after)} of its running, "
                + "fast-forwarded in a few seconds; then alerts are on. Press Ctrl+C to stop.",
                flush=True,
            )
            trends = HistoryBuffer()
            agent = Agent(config, extra_sinks=[LiveView(), trends])
            await learn_past(agent, past)
            for batches in past.values():
                batches.clear()  # the engine's queue has them now (the finished task would keep them)
            announce = asyncio.create_task(_announce_learned(agent, started), name="demo:learned")
            try:
                if web is None or not web.enabled:
                    await agent.run(stop)
                else:
                    await _run_with_page(sim, agent, trends, web, stop)
            finally:
                announce.cancel()
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
