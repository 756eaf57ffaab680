"""Recovery without restarting the agent: the simulator killed mid-run and started again.

The simulator runs as its own process (``edge-sim run`` on fixed ports), so ``kill -9`` is a real
SIGKILL: no goodbye on any socket. It comes back on the same ports; the OPC UA server also with its
namespace at another index, as a real server after a firmware update. The agent side is the real
``MachinePoller`` with its default backoff, handing batches and up/down changes to a recording
sink, exactly what the MQTT publisher would get.

What a user must see, and what is checked:

- values resume without restarting anything, within the backoff bound computed from the poller's
  own backoff (the step it had reached when the server came back, plus one connect and one poll);
- after the namespace moved, tags written ``nsu=<uri>;...`` read the right nodes again (checked
  against an independent client that looks the index up itself) while a tag written ``ns=2;...``
  is bad with a reason naming the node: the agent never reads a stale index silently;
- the gap is reported: the machine goes down once with a reason and recovers once (not a message
  per failed attempt), and no value is made up for the time it was down;
- a network cut (a blackholed route: the peer only notices by its own timeouts), and the server
  closing every connection under a live session (as at a session timeout), end the same way.
"""

from __future__ import annotations

import asyncio
import contextlib
import signal
import sys
import time
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from asyncua import ua
from asyncua.client.client import Client

from connectors import MachineConfig
from connectors.modbus.config import ModbusMachine
from connectors.opcua.config import OpcUaMachine
from edge_agent.core.backoff import Backoff
from edge_agent.core.connection import ConnectionState
from edge_agent.core.origin import Origin
from edge_agent.core.samples import Batch, Quality
from edge_agent.runtime.poller import MachinePoller, connect_limit
from simulators import Simulation
from simulators.register_map import ENDPOINT_PATH, NAMESPACE_URI, describe
from tests.chaos.conftest import TcpProxy
from tests.helpers.opcua_reads import source_ns, value_of
from tests.helpers.servers import free_port
from tests.helpers.waiting import wait_until

MACHINE = "pump-1"
SIM_INTERVAL = 0.5
"""Seconds between simulator updates: slow enough that the agent and a witness see the same updates."""
SHIFT = 3
"""Placeholder namespaces the restarted OPC UA server registers first: its namespace moves from 2 to 5."""
ORIGIN = Origin("site", "area", "line", MACHINE)
STOP_WITHIN = 15.0
"""A cancelled poller ends within this (generous for a loaded box): one that never ends hangs the agent's stop."""


# ----------------------------------------------------------------------------- the simulator process


class SimProcess:
    """``edge-sim run`` serving pump-1 on fixed ports; ``kill9`` and ``start`` again on the same ports."""

    def __init__(self, directory: Path, *, opcua: bool, modbus: bool) -> None:
        self.directory = directory
        self.opcua_port = free_port() if opcua else None
        self.modbus_port = free_port() if modbus else None
        self.process: asyncio.subprocess.Process | None = None
        self.runs = 0

    @property
    def endpoint(self) -> str:
        return f"opc.tcp://127.0.0.1:{self.opcua_port}{ENDPOINT_PATH}"

    async def start(self, extra_namespaces: int = 0) -> None:
        """Start and wait until both servers listen (the process prints 'running' then)."""
        self.runs += 1
        log = self.directory / f"edge-sim-{self.runs}.log"
        ports = ["--opcua-port", str(self.opcua_port or "off"), "--modbus-port", str(self.modbus_port or "off")]
        with log.open("wb") as handle:
            self.process = await asyncio.create_subprocess_exec(
                sys.executable, "-m", "simulators.cli", "run", *ports, "--control-port", "off",
                "--machines", MACHINE, "--interval", str(SIM_INTERVAL),
                "--opcua-extra-namespaces", str(extra_namespaces),
                stdout=handle, stderr=asyncio.subprocess.STDOUT,
            )  # fmt: skip
        await wait_until(
            lambda: "edge-sim running" in log.read_text(errors="replace") or self.process_ended(),
            60,
            "edge-sim to listen",
        )
        if self.process_ended():
            raise AssertionError(f"edge-sim exited early:\n{log.read_text(errors='replace')}")

    def process_ended(self) -> bool:
        return self.process is not None and self.process.returncode is not None

    async def kill9(self) -> None:
        assert self.process is not None
        assert self.process.returncode is None, "edge-sim had already died"
        self.process.send_signal(signal.SIGKILL)
        await self.process.wait()

    async def close(self) -> None:
        if self.process is not None and self.process.returncode is None:
            self.process.kill()
            await self.process.wait()


@pytest.fixture
async def make_sim(tmp_path: Path) -> AsyncIterator[Callable[..., Any]]:
    made: list[SimProcess] = []

    async def make(*, opcua: bool = False, modbus: bool = False) -> SimProcess:
        sim = SimProcess(tmp_path, opcua=opcua, modbus=modbus)
        made.append(sim)
        await sim.start()
        return sim

    try:
        yield make
    finally:
        for sim in made:
            await sim.close()


# ----------------------------------------------------------------------------- the agent side


@dataclass
class Recorder:
    """A sink that keeps what the poller hands over, with the monotonic time it arrived."""

    name: str = "recorder"
    batches: list[tuple[float, Batch]] = field(default_factory=list)
    states: list[tuple[float, str, str | None]] = field(default_factory=list)

    async def start(self) -> None:
        return None

    async def submit(self, batch: Batch, origin: Origin) -> None:
        assert origin == ORIGIN
        self.batches.append((time.monotonic(), batch))

    def machine_state_changed(self, origin: Origin, state: str, reason: str | None) -> None:
        assert origin == ORIGIN
        self.states.append((time.monotonic(), state, reason))

    async def close(self) -> None:
        return None

    def transitions(self) -> list[str]:
        return [state for _, state, _ in self.states]

    def since(self, moment: float) -> list[Batch]:
        return [batch for at, batch in self.batches if at >= moment]


def good_tags(batches: list[Batch]) -> set[str]:
    return {s.tag for b in batches for s in b.samples if s.quality is Quality.GOOD}


@contextlib.asynccontextmanager
async def polling(config: MachineConfig) -> AsyncIterator[tuple[MachinePoller, Recorder]]:
    recorder = Recorder()
    poller = MachinePoller(config, ORIGIN, [recorder])
    task = asyncio.create_task(poller.run(), name=f"poll:{config.id}")
    try:
        yield poller, recorder
    finally:
        task.cancel()
        _, pending = await asyncio.wait({task}, timeout=STOP_WITHIN)
    assert not pending, f"the poller did not stop within {STOP_WITHIN:g} s of its cancellation"
    assert poller.stats.state is ConnectionState.CLOSED


def recovery_bound(poller: MachinePoller) -> float:
    """The longest a poller may take to read again once its server is back, from its own backoff.

    The sleep in progress is at most the current step ``initial * 2**attempts`` (capped), then
    one connect (``connect_limit``) and one poll interval.
    """
    backoff: Backoff = poller.backoff
    step = min(backoff.cap, backoff.initial * 2.0**backoff.attempts)
    return step + connect_limit(poller.machine) + poller.machine.interval


async def wait_until_down_a_while(poller: MachinePoller, recorder: Recorder, within: float, attempts: int = 2) -> None:
    """Down reported, and ``attempts`` reconnects failed (the backoff has grown) before the server returns.

    Through a blackholed route every attempt waits out its connect timeout, so one is enough there.
    """
    await wait_until(
        lambda: "down" in recorder.transitions() and poller.backoff.attempts >= attempts,
        within,
        f"the machine reported down and {attempts} reconnect(s) failed",
        detail=lambda: (poller.stats, recorder.states),
    )


def assert_one_gap(recorder: Recorder, fault_at: float, back: float) -> str:
    """From the fault on: down once, with a reason, then up once the server is back (a report per
    transition, not per failed attempt), and no values for the time in between."""
    after = [(at, state, reason) for at, state, reason in recorder.states if at >= fault_at]
    assert [state for _, state, _ in after][:2] == ["down", "up"], recorder.states
    (down_at, _, reason), (up_at, _, _) = after[0], after[1]
    assert up_at >= back, "reported up before the server was back"
    assert reason, "the down report carries no reason"
    assert MACHINE in reason, reason
    made_up = [b for at, b in recorder.batches if down_at < at < up_at]
    assert made_up == [], "values were reported while the machine was down"
    return reason


# ----------------------------------------------------------------------------- OPC UA


def opcua_config(endpoint: str, mode: str) -> OpcUaMachine:
    machine = describe([MACHINE]).machines[0]
    tags: list[dict[str, Any]] = [{"name": s.name, "node": s.opcua_node} for s in machine.signals]
    tags += [{"name": name, "node": node} for name, node in machine.status_nodes.items()]
    tags.append({"name": "flow_by_index", "node": f"ns=2;s={MACHINE}.flow"})  # the index, not the URI
    return OpcUaMachine.model_validate(
        {
            "type": "opcua",
            "id": MACHINE,
            "endpoint": endpoint,
            "security": {"policy": "None", "mode": "None"},
            "interval": "500ms",
            "connect_timeout": "5s",
            "mode": mode,
            "tags": tags,
        }
    )


SIGNALS = [s.name for s in describe([MACHINE]).machines[0].signals]
URI_TAGS = [*SIGNALS, "state", "state_code", "parts_count"]


async def witness(endpoint: str, seconds: float) -> tuple[int, dict[tuple[str, int], object]]:
    """An independent asyncua client: the namespace index it finds, and every (tag, source ns) -> value."""
    seen: dict[tuple[str, int], object] = {}
    async with Client(endpoint, timeout=5) as client:
        index = await client.get_namespace_index(NAMESPACE_URI)
        nodes = [client.get_node(ua.NodeId(ua.String(f"{MACHINE}.{tag}"), ua.Int16(index))) for tag in URI_TAGS]
        deadline = time.monotonic() + seconds
        while time.monotonic() < deadline:
            for tag, value in zip(URI_TAGS, await client.read_attributes(nodes), strict=True):
                seen[tag, source_ns(value)] = value_of(value)
            await asyncio.sleep(0.1)
    return index, seen


@pytest.mark.parametrize("mode", ["poll", "subscribe"])
async def test_opcua_kill_9_and_restart_with_a_moved_namespace(mode: str, make_sim: Callable[..., Any]) -> None:
    sim: SimProcess = await make_sim(opcua=True)
    config = opcua_config(sim.endpoint, mode)
    async with polling(config) as (poller, recorder):
        await wait_until(
            lambda: good_tags([b for _, b in recorder.batches]) >= {*URI_TAGS, "flow_by_index"},
            30,
            "every tag read good before the kill (ns=2 is right while the namespace is at 2)",
            detail=lambda: (poller.stats, recorder.batches[-1:]),
        )
        fault_at = time.monotonic()
        await sim.kill9()
        await wait_until_down_a_while(poller, recorder, 30)
        restarting = time.monotonic()  # the poller may connect before start() returns
        await sim.start(extra_namespaces=SHIFT)
        back, bound = time.monotonic(), recovery_bound(poller)
        await wait_until(
            lambda: good_tags(recorder.since(back)) >= set(URI_TAGS),
            bound,
            f"every nsu= tag good again within the backoff bound ({bound:.1f} s)",
            detail=lambda: (poller.stats, recorder.states, recorder.batches[-1:]),
        )
        # The right nodes: what the agent read equals what a client that resolved the index itself read.
        started = time.monotonic()
        index, seen = await witness(sim.endpoint, 3.0)
        agent = {(s.tag, s.timestamp_ns): s for b in recorder.since(started - 1.0) for s in b.samples}
    assert index == 2 + SHIFT
    for tag in SIGNALS:  # they change at every update (status values may not: no new notification then)
        common = [key for key in seen if key[0] == tag and key in agent]
        assert common, f"{tag}: the agent and the witness never saw the same update"
        for key in common:
            assert agent[key].quality is Quality.GOOD
            assert agent[key].value == seen[key], (key, agent[key], seen[key])
    by_index = [s for b in recorder.since(back) for s in b.samples if s.tag == "flow_by_index"]
    assert by_index, "the ns=2 tag is not reported at all after the restart"
    assert all(s.quality is Quality.BAD for s in by_index), by_index
    assert f"the server has no node ns=2;s={MACHINE}.flow" in (by_index[-1].reason or ""), by_index[-1]
    assert_one_gap(recorder, fault_at, restarting)
    assert poller.stats.last_error is None


# ----------------------------------------------------------------------------- Modbus


def modbus_config(port: int) -> ModbusMachine:
    machine = describe([MACHINE]).machines[0]
    tags: list[dict[str, Any]] = [
        {"name": s.name, "table": "input", "address": s.modbus_input_address, "type": "float32"}
        for s in machine.signals
    ]
    tags.append({"name": "state_code", "table": "holding", "address": 102, "type": "uint16"})
    return ModbusMachine.model_validate(
        {
            "type": "modbus",
            "id": MACHINE,
            "host": "127.0.0.1",
            "port": port,
            "unit_id": machine.modbus_unit_id,
            "interval": "500ms",
            "tags": tags,
        }
    )


async def test_modbus_kill_9_and_restart(make_sim: Callable[..., Any]) -> None:
    sim: SimProcess = await make_sim(modbus=True)
    assert sim.modbus_port is not None
    config = modbus_config(sim.modbus_port)
    names = {tag.name for tag in config.tags}
    async with polling(config) as (poller, recorder):
        await wait_until(
            lambda: any(good_tags([b]) == names for _, b in recorder.batches), 30, "a good batch before the kill"
        )
        fault_at = time.monotonic()
        await sim.kill9()
        await wait_until_down_a_while(poller, recorder, 30)
        restarting = time.monotonic()  # the poller may connect before start() returns
        await sim.start()
        back, bound = time.monotonic(), recovery_bound(poller)
        await wait_until(
            lambda: any(good_tags([b]) == names for b in recorder.since(back)),
            bound,
            f"a whole good batch again within the backoff bound ({bound:.1f} s)",
            detail=lambda: (poller.stats, recorder.states, recorder.batches[-1:]),
        )
        polls = poller.stats.polls
        await wait_until(lambda: poller.stats.polls >= polls + 4, 10, "polling goes on after the recovery")
    assert_one_gap(recorder, fault_at, restarting)
    fresh = recorder.since(back)
    assert all(b.good_count == len(names) for b in fresh[-3:]), fresh[-3:]


# ----------------------------------------------------------------------------- network cut


@pytest.mark.parametrize("mode", ["poll", "subscribe"])
async def test_opcua_network_cut_then_restored(mode: str, make_sim: Callable[..., Any]) -> None:
    sim: SimProcess = await make_sim(opcua=True)
    assert sim.opcua_port is not None
    proxy = TcpProxy(sim.opcua_port)
    await proxy.start()
    try:
        config = opcua_config(f"opc.tcp://127.0.0.1:{proxy.port}{ENDPOINT_PATH}", mode)
        async with polling(config) as (poller, recorder):
            await wait_until(
                lambda: good_tags([b for _, b in recorder.batches]) >= set(URI_TAGS), 30, "every tag read good"
            )
            fault_at = time.monotonic()
            proxy.set_mode("blackhole")  # packets vanish; nobody closes anything
            await wait_until_down_a_while(poller, recorder, 60, attempts=1)
            proxy.set_mode("pass")
            back, bound = time.monotonic(), recovery_bound(poller)
            await wait_until(
                lambda: good_tags(recorder.since(back)) >= set(URI_TAGS),
                bound,
                f"every tag good again within the backoff bound ({bound:.1f} s)",
                detail=lambda: (poller.stats, recorder.states),
            )
        assert_one_gap(recorder, fault_at, back)
    finally:
        await proxy.close()


# ----------------------------------------------------------------------------- the server drops the session


@pytest.mark.parametrize("mode", ["poll", "subscribe"])
async def test_opcua_server_closing_every_connection(mode: str) -> None:
    """The server ends the link under a live session (as at a session timeout or a server-side reset)."""
    async with Simulation(seed=1, machines=[MACHINE], update_interval=SIM_INTERVAL, modbus_port=None) as sim:
        config = opcua_config(sim.opcua.endpoint, mode)
        async with polling(config) as (poller, recorder):
            await wait_until(
                lambda: good_tags([b for _, b in recorder.batches]) >= set(URI_TAGS), 30, "every tag read good"
            )
            fault_at = time.monotonic()
            assert sim.drop_connections("opcua") >= 1
            # Noticed at the next read at the latest, then one backoff step, one connect, one poll.
            bound = config.interval + config.effective_timeout + recovery_bound(poller)
            await wait_until(
                lambda: (
                    "down" in [s for at, s, _ in recorder.states if at >= fault_at]
                    and good_tags(recorder.since(recorder.states[-1][0])) >= set(URI_TAGS)
                ),
                bound,
                f"down reported and every tag good again within {bound:.1f} s",
                detail=lambda: (poller.stats, recorder.states),
            )
            assert_one_gap(recorder, fault_at, fault_at)
            up_at = recorder.states[-1][0]
            for tag in SIGNALS:  # exactly what the server served, nothing made up
                served = set(sim.served("opcua", MACHINE, tag))
                for sample in (s for b in recorder.since(up_at) for s in b.samples if s.tag == tag):
                    assert (sample.timestamp_ns, sample.value) in served, sample
        assert sim.write_count == 0


@pytest.mark.parametrize("mode", ["poll", "subscribe"])
async def test_opcua_session_expired_on_the_server(mode: str) -> None:
    """The server forgets the session while the TCP link stays up (a session timeout): the next
    request is refused, and the poller starts a new session without an agent restart."""
    async with Simulation(seed=2, machines=[MACHINE], update_interval=SIM_INTERVAL, modbus_port=None) as sim:
        config = opcua_config(sim.opcua.endpoint, mode)
        async with polling(config) as (poller, recorder):
            await wait_until(
                lambda: good_tags([b for _, b in recorder.batches]) >= set(URI_TAGS), 30, "every tag read good"
            )
            fault_at = time.monotonic()
            assert await sim.expire_sessions() >= 1
            # Subscribe mode notices at asyncua's next keep-alive probe of the session (every
            # max(5 s, timeout)); poll mode at the next Read. Then one backoff step, one connect, one poll.
            noticed = max(5.0, config.effective_timeout) + config.effective_timeout if mode == "subscribe" else 0.0
            bound = noticed + config.interval + config.effective_timeout + recovery_bound(poller)
            await wait_until(
                lambda: (
                    "down" in [s for at, s, _ in recorder.states if at >= fault_at]
                    and recorder.states[-1][1] == "up"
                    and good_tags(recorder.since(recorder.states[-1][0])) >= set(URI_TAGS)
                ),
                bound,
                f"down reported and every tag good again within {bound:.1f} s",
                detail=lambda: (poller.stats, recorder.states),
            )
            assert_one_gap(recorder, fault_at, fault_at)
            up_at = recorder.states[-1][0]
            for tag in SIGNALS:  # exactly what the server served, nothing made up
                served = set(sim.served("opcua", MACHINE, tag))
                for sample in (s for b in recorder.since(up_at) for s in b.samples if s.tag == tag):
                    assert (sample.timestamp_ns, sample.value) in served, sample
        assert sim.write_count == 0
