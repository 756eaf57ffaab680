"""OPC UA benchmark: the agent's CPU for 5,000 monitored items at 1 Hz, and its polling rate vs raw asyncua.

Prints, in one run:
  * subscribe: one OPC UA machine with ``--items`` tags (default 5,000) in subscription mode, each
    sampled and published at 1 Hz, read by the agent's real ``MachinePoller`` for ``--seconds``.
    Every tag is a simulator value that changes at every update, so the server reports each tag
    once a second. Shown: the agent's CPU time over wall time (share of one core; target
    <= 25 %), and the samples received against the ones expected;
  * poll: the connector reading ``--nodes`` nodes (default 1,000) with one Read, back to back,
    against a raw asyncua loop (``Client.read_values`` of the same nodes), interleaved runs
    (A B C, C B A, ...) and the median rate of each; target: agent >= 80 % of raw.
    A raw Read asking for both timestamps (what the connector asks for) is shown for context.

The simulator serves in a child process (``edge-sim run --extra-tags``), so this process's CPU
time (``time.process_time``) is the agent's (and the raw client's) alone. Security is None on
both sides (the configs say so): the numbers are about reading, not cryptography.

``--publish`` runs the subscribe part as the whole agent (outbox, MQTT to a real Mosquitto) instead
of the connector and poller alone. A subscribe run in which the link dropped or the server fell
behind says NOT MEASURED and gives the CPU scaled to the asked rate instead of a verdict.

Run: .venv/bin/python -m bench.opcua_throughput [--items 5000] [--seconds 30] [--publish] [--nodes 1000]
     [--rounds 8] [--round-seconds 3] [--only subscribe|poll]
     [--profile subscribe|poll] (cProfile of the agent's part, top functions by own time)
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import cProfile
import io
import logging
import math
import os
import pstats
import re
import statistics
import sys
import tempfile
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

from asyncua import ua
from asyncua.client.client import Client
from asyncua.ua.attribute_ids import AttributeIds

from connectors.opcua.client import OpcUaConnector
from connectors.opcua.config import OpcUaMachine
from edge_agent.core.origin import Origin
from edge_agent.core.samples import Batch
from edge_agent.runtime.poller import MachinePoller
from simulators.physics import MACHINE_KINDS
from simulators.register_map import NAMESPACE_URI

KIND = "pump"
AUX_PER_MACHINE = 90
"""The simulator's most auxiliary tags per machine (``MAX_EXTRA_TAGS``)."""
TAGS_PER_MACHINE = len(MACHINE_KINDS[KIND].signal_specs) + AUX_PER_MACHINE
"""Values per simulated machine that change at every update (signals and auxiliary tags)."""
SUBSCRIBE_TARGET = 0.25
POLL_TARGET = 0.80


@dataclass(frozen=True)
class Served:
    """A running ``edge-sim run`` child: its endpoint, the node ids of its changing values, its pid."""

    endpoint: str
    nodes: list[str]
    pid: int

    def cpu_seconds(self) -> float:
        """CPU time (user + system) the simulator process has used so far, from /proc."""
        fields = Path(f"/proc/{self.pid}/stat").read_text().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def changing_nodes(machines: int) -> list[str]:
    """``nsu=`` node ids of every signal and auxiliary tag of ``machines`` pumps, machine by machine."""
    signals = [s.name for s in MACHINE_KINDS[KIND].signal_specs]
    aux = [f"aux_{k:02d}" for k in range(1, AUX_PER_MACHINE + 1)]
    return [f"nsu={NAMESPACE_URI};s={KIND}-{m}.{name}" for m in range(1, machines + 1) for name in [*signals, *aux]]


@contextlib.asynccontextmanager
async def simulator(values: int, interval: float) -> AsyncIterator[Served]:
    """A simulator child process serving at least ``values`` changing values, updated every ``interval`` s."""
    machines = math.ceil(values / TAGS_PER_MACHINE)
    process = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "simulators.cli", "run", "--opcua-port", "0", "--modbus-port", "off",
        "--control-port", "off", "--interval", str(interval), "--extra-tags", str(AUX_PER_MACHINE),
        "--machines", *(f"{KIND}-{m}" for m in range(1, machines + 1)),
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.DEVNULL,
    )  # fmt: skip
    assert process.stdout is not None
    began = time.monotonic()
    try:
        endpoint = None
        async with asyncio.timeout(300):  # asyncua builds a big address space slowly
            while True:
                line = (await process.stdout.readline()).decode()
                if not line:
                    raise RuntimeError("edge-sim exited before it was ready")
                found = re.match(r"OPC UA\s+(opc\.tcp://\S+)", line)
                endpoint = found.group(1) if found else endpoint
                if "edge-sim running" in line:
                    break
        assert endpoint is not None
        progress(f"simulator: {machines} machines, {machines * TAGS_PER_MACHINE} changing values, ready after "
                 f"{time.monotonic() - began:.0f} s (pid {process.pid})")  # fmt: skip
        yield Served(endpoint, changing_nodes(machines)[:values], process.pid)
    finally:
        if process.returncode is None:
            process.terminate()
            try:
                await asyncio.wait_for(process.wait(), 10)
            except TimeoutError:  # a big address space can take long to close on a loaded box
                process.kill()
                await process.wait()


def progress(text: str) -> None:
    """A progress line on stderr (the results go to stdout)."""
    print(f"  .. {text}", file=sys.stderr, flush=True)


def machine(served: Served, count: int, **keys: object) -> OpcUaMachine:
    tags = [{"name": f"t{i:05d}", "node": node} for i, node in enumerate(served.nodes[:count])]
    return OpcUaMachine.model_validate(
        {
            "type": "opcua",
            "id": "bench",
            "endpoint": served.endpoint,
            "security": {"policy": "None", "mode": "None"},
            "connect_timeout": "120s",
            "units_from_server": False,
            "tags": tags,
            **keys,
        }
    )


@contextlib.contextmanager
def profiled(enabled: bool) -> Iterator[None]:
    """cProfile around the block when asked; prints the 25 functions with the most own time."""
    if not enabled:
        yield
        return
    profile = cProfile.Profile()
    profile.enable()
    try:
        yield
    finally:
        profile.disable()
        out = io.StringIO()
        pstats.Stats(profile, stream=out).sort_stats("tottime").print_stats(25)
        print(out.getvalue())


class Counter:
    """A sink that only counts: the agent's work up to handing batches on, nothing after."""

    name = "counter"

    def __init__(self) -> None:
        self.samples = 0
        self.good = 0
        self.updates: set[int] = set()
        """Distinct source timestamps: the simulator stamps all values of one update alike."""

    async def start(self) -> None:
        return None

    async def submit(self, batch: Batch, _origin: Origin) -> None:
        self.samples += len(batch.samples)
        self.good += batch.good_count
        self.updates.update(sample.timestamp_ns for sample in batch.samples)

    def machine_state_changed(self, _origin: Origin, state: str, reason: str | None) -> None:
        if state == "down":
            print(f"  (the machine went down: {reason})")

    async def close(self) -> None:
        return None


@contextlib.asynccontextmanager
async def agent_polling(config: OpcUaMachine, counter: Counter, publish: bool) -> AsyncIterator[MachinePoller]:
    """The machine's poller running: alone (connector + poller), or in a whole agent publishing to Mosquitto."""
    if not publish:
        poller = MachinePoller(config, Origin("bench", "bench", "bench", "bench"), [counter])
        task = asyncio.create_task(poller.run(), name="poll:bench")
        try:
            yield poller
        finally:
            await stop(task)
        return
    from edge_agent.runtime.agent import Agent
    from edge_agent.runtime.config import AgentConfig
    from tests.helpers.servers import Mosquitto

    with tempfile.TemporaryDirectory(prefix="bench-opcua-") as state, Mosquitto() as broker:
        agent = Agent(
            AgentConfig.model_validate(
                {
                    "machines": [config.model_dump(mode="json", exclude_unset=True)],
                    "mqtt": {"host": "127.0.0.1", "port": broker.port, "topic_prefix": "bench"},
                    "outbox": {"path": str(Path(state) / "outbox.sqlite")},
                }
            ),
            extra_sinks=[counter],
        )
        stopping = asyncio.Event()
        task = asyncio.create_task(agent.run(stopping), name="agent")
        try:
            yield agent.pollers[0]
        finally:
            stopping.set()
            await stop(task, cancel=False)


async def subscribe(items: int, seconds: float, profile: bool, publish: bool) -> None:
    async with simulator(items, 1.0) as served:
        # Room for a few seconds of changes: a server that falls behind sends two updates in one publish.
        config = machine(
            served, items, mode="subscribe", interval="1s", sampling_interval="1s", queue_size=2,
            max_queued_samples=5 * items,
        )  # fmt: skip
        counter = Counter()
        async with agent_polling(config, counter, publish) as poller:
            began = time.monotonic()
            while counter.samples < items:  # connected, subscribed, and the first values are in
                if time.monotonic() - began > 300:
                    raise RuntimeError(f"no full set of values within 300 s: {poller.stats}")
                await asyncio.sleep(0.2)
            progress(f"subscribed: all {items} values in after {time.monotonic() - began:.0f} s")
            await asyncio.sleep(2.0)  # past the initial burst: measure the steady state
            samples, good, failures = counter.samples, counter.good, poller.stats.failures
            counter.updates.clear()
            cpu, wall, server_cpu = time.process_time(), time.monotonic(), served.cpu_seconds()
            with profiled(profile):
                await asyncio.sleep(seconds)
            cpu, wall = time.process_time() - cpu, time.monotonic() - wall
            server_cpu = served.cpu_seconds() - server_cpu
            received, good, updates = counter.samples - samples, counter.good - good, len(counter.updates)
            failures = poller.stats.failures - failures
    connector = poller.connector
    dropped = connector.dropped_samples if isinstance(connector, OpcUaConnector) else 0
    what = "whole agent publishing to Mosquitto" if publish else "connector and poller"
    share, scaled = cpu / wall, cpu / max(1, received) * items  # scaled: CPU for `items` samples a second
    if failures or received < 0.9 * items * wall:
        verdict = (
            f"NOT MEASURED: {received / wall:.0f} of {items} samples/s arrived, the link was lost {failures} "
            f"times; at the rate that did arrive, {items} samples/s would take {scaled:.1%} of one core"
        )
    else:
        verdict = "OK" if share <= SUBSCRIBE_TARGET else "MISSED"
    print(
        f"subscribe {items} monitored items at 1 Hz for {wall:.0f} s, {what}: agent CPU {share:.1%} of one core "
        f"(target <= {SUBSCRIBE_TARGET:.0%}) {verdict}"
    )
    print(
        f"          samples received {received} = {received / wall:.0f}/s ({good} good); the simulator served "
        f"{updates} updates ({updates / wall:.2f}/s, its CPU {server_cpu / wall:.0%} of one core); "
        f"every update that reached the agent came for {received / max(1, items * updates):.1%} of the items"
    )
    print(f"          dropped by the change queue {dropped}, link lost {failures} times while measuring")


async def stop(task: asyncio.Task[None], grace: float = 15.0, *, cancel: bool = True) -> None:
    """Cancel a task (or let it end); like the agent's shutdown, give up after ``grace`` s and say where it hung."""
    if cancel:
        task.cancel()
    _, pending = await asyncio.wait({task}, timeout=grace)
    if pending:
        progress(f"{task.get_name()} did not stop within {grace:g} s; it hangs here:")
        task.print_stack(file=sys.stderr)


async def rate(read_once: Callable[[], Awaitable[None]], seconds: float) -> float:
    """Reads per second of ``read_once`` called back to back for ``seconds``."""
    count, began = 0, time.monotonic()
    while time.monotonic() - began < seconds:
        await read_once()
        count += 1
    return count / (time.monotonic() - began)


async def poll(nodes: int, rounds: int, seconds: float, profile: bool) -> None:
    async with simulator(nodes, 1.0) as served:
        config = machine(served, nodes, interval="10s", timeout="9s")
        connector = OpcUaConnector(config)
        await connector.connect()
        async with Client(served.endpoint, timeout=10) as client:
            index = await client.get_namespace_index(NAMESPACE_URI)
            node_ids = [ua.NodeId.from_string(n.replace(f"nsu={NAMESPACE_URI}", f"ns={index}")) for n in served.nodes]
            raw_nodes = [client.get_node(n) for n in node_ids]
            both = ua.ReadParameters()
            both.TimestampsToReturn = ua.TimestampsToReturn.Both
            both.NodesToRead = [ua.ReadValueId(NodeId=n, AttributeId=AttributeIds.Value) for n in node_ids]

            async def agent_read() -> None:
                batch = await connector.read()
                if batch.good_count != nodes:
                    raise RuntimeError(f"the connector read {batch.good_count} good of {nodes}")

            async def raw_read() -> None:
                await client.read_values(raw_nodes)

            async def raw_both() -> None:
                await client.uaclient.read(both)

            assert connector.reads_per_cycle == 1, "the server splits the Read: not the comparison asked for"
            await rate(agent_read, 1.0)  # warm both up
            await rate(raw_read, 1.0)
            rates: dict[str, list[float]] = {"agent": [], "raw": [], "both": []}
            runs = {"agent": agent_read, "raw": raw_read, "both": raw_both}
            for number in range(rounds):  # A B C, C B A, ...: neither goes first every time
                for name in list(runs) if number % 2 == 0 else reversed(list(runs)):
                    with profiled(profile and name == "agent"):
                        rates[name].append(await rate(runs[name], seconds))
        await connector.close()
    agent, raw, raw_with_both = (statistics.median(rates[name]) for name in ("agent", "raw", "both"))
    print(f"poll      {nodes} nodes per Read, back to back, {rounds} interleaved rounds of {seconds:g} s, medians:")
    print(f"          agent connector        {agent:6.1f} reads/s  ({agent * nodes:8.0f} values/s)")
    for name, label in (("agent", "agent"), ("raw", "raw read_values"), ("both", "raw Read, both")):
        print(f"            rounds, {label:<16} " + " ".join(f"{r:5.1f}" for r in rates[name]))
    print(f"          raw asyncua read_values {raw:5.1f} reads/s  (source timestamps only)")
    print(f"          raw Read, both stamps  {raw_with_both:6.1f} reads/s  (what the connector asks for)")
    print(
        f"          agent / raw read_values = {agent / raw:.0%} (target >= {POLL_TARGET:.0%}) "
        f"{'OK' if agent / raw >= POLL_TARGET else 'MISSED'}; agent / raw Read with both stamps = "
        f"{agent / raw_with_both:.0%}"
    )


async def main() -> None:
    logging.basicConfig(level=logging.ERROR)
    logging.getLogger("asyncua").setLevel(logging.CRITICAL)  # teardown noise; link losses are printed below
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--items", type=int, default=5000, help="monitored items in subscription mode")
    parser.add_argument("--seconds", type=float, default=30.0, help="measuring time in subscription mode")
    parser.add_argument("--nodes", type=int, default=1000, help="nodes per Read in polling mode")
    parser.add_argument("--rounds", type=int, default=8, help="interleaved polling rounds")
    parser.add_argument("--round-seconds", type=float, default=3.0, help="seconds per polling run")
    parser.add_argument("--only", choices=["subscribe", "poll"], default=None, help="run one part only")
    parser.add_argument(
        "--publish", action="store_true", help="subscribe part: the whole agent, publishing to a real Mosquitto"
    )
    parser.add_argument("--profile", choices=["subscribe", "poll"], default=None, help="cProfile the agent's part")
    args = parser.parse_args()
    if args.only in {None, "subscribe"}:
        await subscribe(args.items, args.seconds, args.profile == "subscribe", args.publish)
    if args.only in {None, "poll"}:
        await poll(args.nodes, args.rounds, args.round_seconds, args.profile == "poll")


if __name__ == "__main__":
    asyncio.run(main())
