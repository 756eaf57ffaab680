"""Modbus benchmark: 10,000 registers over 10 devices, the agent's CPU at 1 Hz, and flat-out rate.

Prints, in one run:
  * plan: requests per cycle the agent sends for the map (10 devices x 1000 input registers, read
    as 500 float32 tags each) against the minimum computed here independently of the planner
    (a request holds at most 125 registers and a tag is never split between two requests);
    asserted equal, and with the libmodbus server also counted by the server itself;
  * 1 Hz: the agent's runtime (10 pollers, 10 Modbus connectors, a counting sink, no MQTT)
    polls every device once a second for ``--seconds``; the CPU time of this process divided by
    the wall time, against the target of 10 % of one core. The server runs in another process,
    so the CPU measured is the agent's alone;
  * flat out: one device's coalesced reads, sent back to back by the connector's poll
    (``read()``: plan, requests, decoding, samples) and by a raw pymodbus loop sending the same
    requests and decoding nothing, interleaved (connector, raw, connector, raw, ...) in
    ``--rounds`` bursts of ``--burst`` seconds; medians of the request rates, and the median of
    the ratio within each back-to-back pair (robust when other work shares the CPU) against the
    target of 80 %; also the CPU time per request of each loop.

Server: the libmodbus C server of tests/interop (needs gcc and Debian's libmodbus-dev), in a child
process; when those are missing or ``--server pymodbus`` is given, a pymodbus server in a child
process (``edge-sim`` maps at most 100 signals per machine, too few for 1000 registers).

Run: .venv/bin/python -m bench.modbus_throughput [--seconds 30] [--rounds 20] [--burst 1]
                                                 [--server auto|libmodbus|pymodbus]
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import math
import os
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pymodbus.client import AsyncModbusTcpClient

from connectors.modbus.client import ModbusConnector
from connectors.modbus.config import MAX_REGISTERS_PER_REQUEST, ModbusMachine, ModbusTag
from edge_agent.core.samples import Batch, Quality
from edge_agent.runtime.agent import Agent
from edge_agent.runtime.config import AgentConfig

DEVICES = 10
REGISTERS = 1000
FLOAT_REGISTERS = 2
CPU_TARGET = 0.10
RATE_TARGET = 0.80


# --- the map and its minimum ----------------------------------------------------------------------


def device_tags(registers: int = REGISTERS) -> list[dict[str, Any]]:
    """One device's map: its input registers 0..registers-1 as float32 tags (ABCD)."""
    return [
        {"name": f"r{address:04d}", "table": "input", "address": address, "type": "float32"}
        for address in range(0, registers - FLOAT_REGISTERS + 1, FLOAT_REGISTERS)
    ]


def minimum_requests(tags: Iterable[ModbusTag], limit: int = MAX_REGISTERS_PER_REQUEST) -> int:
    """The fewest reads that cover ``tags`` when a read spans at most ``limit`` registers.

    Computed without the planner: per unit and table, tags that touch or overlap form a block;
    a block of ``n`` tags of ``size`` registers each, laid end to end, needs
    ``ceil(n / floor(limit / size))`` reads because no tag may be split between two reads.
    Blocks of mixed sizes are not needed by this benchmark and are refused.
    """
    by_space: dict[tuple[int | None, str], list[ModbusTag]] = {}
    for tag in tags:
        by_space.setdefault((tag.unit_id, tag.table), []).append(tag)
    total = 0
    for space in by_space.values():
        for block in _blocks(sorted(space, key=lambda t: t.address)):
            sizes = {t.register_count for t in block}
            if len(sizes) != 1:
                raise ValueError("minimum_requests handles blocks of one tag size only")
            per_read = limit // sizes.pop()
            total += math.ceil(len(block) / per_read)
    return total


def _blocks(ordered: Sequence[ModbusTag]) -> Iterator[list[ModbusTag]]:
    block: list[ModbusTag] = []
    for tag in ordered:
        if block and tag.address > block[-1].end:
            yield block
            block = []
        block.append(tag)
    if block:
        yield block


# --- servers -------------------------------------------------------------------------------------


@dataclass
class Server:
    """Where the devices are: host, port, and each device's unit id."""

    port: int
    unit_ids: list[int]
    name: str
    libmodbus: Any = None  # tests.interop.libmodbus.LibmodbusServer when that server runs

    def requests_served(self) -> int | None:
        """The server's own request counter (libmodbus only)."""
        return int(self.libmodbus.stats()["requests"]) if self.libmodbus is not None else None

    def writes_seen(self) -> int | None:
        return int(self.libmodbus.stats()["writes"]) if self.libmodbus is not None else None


@contextmanager
def libmodbus_server(binary: Path, folder: Path) -> Iterator[Server]:
    """The libmodbus C server (one map, answering every unit id)."""
    from tests.interop.libmodbus import LibmodbusServer  # tests/ only when that server is used

    with LibmodbusServer(binary, folder, registers=REGISTERS) as server:
        yield Server(server.port, list(range(1, DEVICES + 1)), "libmodbus (C) server", server)


PYMODBUS_SERVER = """
import asyncio
from pymodbus.server import ModbusTcpServer
from pymodbus.simulator import DataType, SimData, SimDevice

async def main(devices, registers):
    def bits():
        return [SimData(0, datatype=DataType.BITS, readonly=True)]
    def words():
        return [SimData(0, values=list(range(registers)), datatype=DataType.REGISTERS, readonly=True)]
    units = [SimDevice(unit, simdata=(bits(), bits(), words(), words())) for unit in range(1, devices + 1)]
    server = ModbusTcpServer(units, address=("127.0.0.1", 0))
    await server.serve_forever(background=True)
    print(server.transport.sockets[0].getsockname()[1], flush=True)
    await asyncio.Event().wait()

import sys
asyncio.run(main(int(sys.argv[1]), int(sys.argv[2])))
"""
"""The fallback: 10 pymodbus devices of 1000 registers each (``edge-sim`` maps at most 100 signals)."""


@contextmanager
def pymodbus_server() -> Iterator[Server]:
    """A pymodbus server in a child process, when the libmodbus one cannot be built."""
    command = [sys.executable, "-c", PYMODBUS_SERVER, str(DEVICES), str(REGISTERS)]
    process = subprocess.Popen(command, stdout=subprocess.PIPE, text=True)
    try:
        assert process.stdout is not None
        line = process.stdout.readline()
        if not line.strip().isdigit():
            raise RuntimeError(f"the pymodbus server did not announce its port (got {line!r})")
        yield Server(int(line), list(range(1, DEVICES + 1)), "pymodbus server (child process)")
    finally:
        process.terminate()
        process.wait(timeout=10)


# --- the measurements ---------------------------------------------------------------------------


def machine(server: Server, index: int, interval: float) -> dict[str, Any]:
    return {
        "type": "modbus",
        "id": f"dev-{index:02d}",
        "host": "127.0.0.1",
        "port": server.port,
        "unit_id": server.unit_ids[index],
        "interval": interval,
        "tags": device_tags(),
    }


class CountingSink:
    """Counts what the pollers deliver, so the 1 Hz phase proves every poll was complete and good."""

    name = "bench-counter"

    def __init__(self) -> None:
        self.batches = 0
        self.samples = 0
        self.bad = 0

    async def start(self) -> None:
        return None

    async def submit(self, batch: Batch, origin: object) -> None:
        del origin
        self.batches += 1
        self.samples += len(batch.samples)
        self.bad += sum(1 for sample in batch.samples if sample.quality is not Quality.GOOD)

    def machine_state_changed(self, origin: object, state: str, reason: str | None) -> None:
        del origin, state, reason

    async def close(self) -> None:
        return None


async def one_hertz(server: Server, seconds: float) -> None:
    """The agent's runtime polling every device at 1 Hz: CPU of this process over wall time."""
    config = AgentConfig.model_validate({"machines": [machine(server, i, 1.0) for i in range(DEVICES)]})
    sink = CountingSink()
    agent = Agent(config, extra_sinks=[sink])
    stop = asyncio.Event()
    task = asyncio.create_task(agent.run(stop), name="bench-agent")
    await asyncio.sleep(3)  # warm-up: connections and first polls
    batches_before, samples_before, bad_before = sink.batches, sink.samples, sink.bad
    cpu_before, wall_before = time.process_time(), time.monotonic()
    await asyncio.sleep(seconds)
    cpu = time.process_time() - cpu_before
    wall = time.monotonic() - wall_before
    batches = sink.batches - batches_before
    stop.set()
    await task
    print(
        f"1 Hz      {DEVICES} devices x {REGISTERS} registers, {batches} polls in {wall:.1f} s "
        f"({sink.samples - samples_before} samples, {sink.bad - bad_before} bad): agent CPU "
        f"{cpu / wall:.1%} of one core  (target <= {CPU_TARGET:.0%})"
    )


@dataclass
class Burst:
    """One flat-out burst: requests per second (wall) and CPU microseconds of this process per request."""

    rate: float
    cpu_us: float


class _Meter:
    def __init__(self) -> None:
        self.requests = 0
        self.wall, self.cpu = time.perf_counter(), time.process_time()

    def result(self) -> Burst:
        wall, cpu = time.perf_counter() - self.wall, time.process_time() - self.cpu
        return Burst(self.requests / wall, cpu / self.requests * 1e6)


async def connector_burst(config: ModbusMachine, seconds: float) -> Burst:
    """The connector's poll loop (read() back to back)."""
    connector = ModbusConnector(config)
    await connector.connect()
    try:
        await connector.read()  # warm
        meter = _Meter()
        end = meter.wall + seconds
        while time.perf_counter() < end:
            batch = await connector.read()
            meter.requests += connector.requests_per_cycle
            if batch.samples[0].quality is not Quality.GOOD:
                raise RuntimeError(f"bad sample during the bench: {batch.samples[0]}")
        return meter.result()
    finally:
        await connector.close()


async def raw_burst(config: ModbusMachine, reads: Sequence[tuple[int, int, int]], seconds: float) -> Burst:
    """A plain pymodbus loop sending the same reads (start, count, unit), decoding nothing."""
    client = AsyncModbusTcpClient(config.host or "127.0.0.1", port=config.port, timeout=5, retries=0)
    await client.connect()
    try:
        await client.read_input_registers(reads[0][0], count=reads[0][1], device_id=reads[0][2])  # warm
        meter = _Meter()
        end = meter.wall + seconds
        while time.perf_counter() < end:
            for start, count, unit in reads:
                response = await client.read_input_registers(start, count=count, device_id=unit)
                if response.isError():
                    raise RuntimeError(f"raw read {start}+{count} refused: {response}")
            meter.requests += len(reads)
        return meter.result()
    finally:
        client.close()


async def flat_out(server: Server, rounds: int, burst: float) -> None:
    config = ModbusMachine.model_validate(machine(server, 0, 10.0))
    plan = ModbusConnector(config).plan
    reads = [(request.start, request.count, request.unit_id) for request in plan]
    agent_runs: list[Burst] = []
    raw_runs: list[Burst] = []
    for _ in range(rounds):
        agent_runs.append(await connector_burst(config, burst))
        raw_runs.append(await raw_burst(config, reads, burst))
    agent = statistics.median(run.rate for run in agent_runs)
    raw = statistics.median(run.rate for run in raw_runs)
    agent_cpu = statistics.median(run.cpu_us for run in agent_runs)
    raw_cpu = statistics.median(run.cpu_us for run in raw_runs)
    sizes = sorted({count for _, count, _ in reads}, reverse=True)
    print(
        f"flat out  one device, {len(reads)} reads per poll ({'/'.join(map(str, sizes))} registers, "
        f"{len(config.tags)} float32), {rounds} interleaved rounds of {burst:g} s, medians:"
    )
    print(f"          raw pymodbus loop  {raw:7.0f} requests/s  {raw_cpu:5.0f} us CPU/request  ({_rates(raw_runs)})")
    print(
        f"          connector read()   {agent:7.0f} requests/s  {agent_cpu:5.0f} us CPU/request  ({_rates(agent_runs)})"
    )
    paired = statistics.median(a.rate / r.rate for a, r in zip(agent_runs, raw_runs, strict=True))
    print(
        f"          connector / raw    {paired:7.0%}  median of the {rounds} back-to-back pairs (target >= "
        f"{RATE_TARGET:.0%}); ratio of the medians {agent / raw:.0%}; CPU per request {agent_cpu / raw_cpu:.2f}x"
    )


def _rates(runs: Iterable[Burst]) -> str:
    return "rounds: " + ", ".join(f"{run.rate:.0f}" for run in runs)


async def plan_check(server: Server) -> None:
    """Requests per cycle: planned, computed minimum, and (libmodbus) counted by the server for one poll each."""
    configs = [ModbusMachine.model_validate(machine(server, i, 5.0)) for i in range(DEVICES)]
    planned = sum(ModbusConnector(config).requests_per_cycle for config in configs)
    minimum = sum(minimum_requests(config.tags) for config in configs)
    counted = 0
    for config in configs:
        connector = ModbusConnector(config)
        await connector.connect()
        try:
            before = await asyncio.to_thread(server.requests_served)
            batch = await connector.read()
            after = await asyncio.to_thread(server.requests_served)
        finally:
            await connector.close()
        if any(sample.quality is not Quality.GOOD for sample in batch.samples):
            raise RuntimeError(f"{config.id}: a bad sample in the plan check")
        counted += (after or 0) - (before or 0)
    seen = f", counted by the server: {counted}" if server.libmodbus is not None else ""
    print(
        f"plan      {DEVICES} devices x {REGISTERS} registers ({sum(len(c.tags) for c in configs)} float32 tags): "
        f"{planned} requests per cycle, minimum {minimum}{seen}"
    )
    assert planned == minimum, f"the planner sends {planned} requests per cycle, the minimum is {minimum}"
    assert server.libmodbus is None or counted == minimum, f"the server counted {counted} requests for one cycle"


async def run(server: Server, args: argparse.Namespace) -> None:
    print(f"server    {server.name} on 127.0.0.1:{server.port}, agent pid {os.getpid()}")
    await plan_check(server)
    await one_hertz(server, args.seconds)
    await flat_out(server, args.rounds, args.burst)
    writes = await asyncio.to_thread(server.writes_seen)
    if writes is not None:
        print(f"writes seen by the server: {writes}")
        assert writes == 0


def libmodbus_binary(kind: str, folder: Path) -> Path | None:
    """The compiled libmodbus server, or None (auto: when gcc or libmodbus-dev are missing)."""
    if kind == "pymodbus":
        return None
    from tests.interop.libmodbus import build  # tests/ only when that server is used

    try:
        return build(folder)
    except RuntimeError as exc:
        if kind == "libmodbus":
            raise
        print(f"(the libmodbus server cannot be built: {str(exc).splitlines()[0]}; using a pymodbus server)")
        return None


@contextmanager
def chosen_server(kind: str, folder: Path) -> Iterator[Server]:
    binary = libmodbus_binary(kind, folder / "build")
    if binary is None:
        with pymodbus_server() as server:
            yield server
    else:
        with libmodbus_server(binary, folder) as server:
            yield server


def main() -> None:
    logging.basicConfig(level=logging.ERROR)
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seconds", type=float, default=30.0, help="length of the 1 Hz CPU measurement")
    parser.add_argument("--rounds", type=int, default=20, help="interleaved flat-out rounds (each: connector, raw)")
    parser.add_argument("--burst", type=float, default=1.0, help="seconds of each flat-out burst")
    parser.add_argument("--server", choices=["auto", "libmodbus", "pymodbus"], default="auto")
    args = parser.parse_args()
    os.environ["STATE_DIRECTORY"] = tempfile.mkdtemp(prefix="bench-modbus-")
    with (
        tempfile.TemporaryDirectory(prefix="bench-modbus-server-") as folder,
        chosen_server(args.server, Path(folder)) as server,
    ):
        asyncio.run(run(server, args))


if __name__ == "__main__":
    main()
