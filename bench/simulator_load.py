"""Simulator benchmark: CPU of one simulator process serving many machines, and `record` speed.

Prints, in one run:
  * serving: one ``Simulation`` with ``--machines`` machines (all five kinds, round robin)
    updating every 100 ms (10 Hz) on both OPC UA and Modbus, while a client reads every value of
    every machine over Modbus once a second. The client runs in a child process, so
    ``time.process_time`` of this process (all its threads) is the simulator's CPU alone;
  * record: ``edge-sim record`` of 7 simulated days of one machine of every kind at 1 Hz (no
    servers), wall time;
  * record rate: ``write_csv`` of 6 simulated hours of one pump in this process, rows per CPU
    second, against ``csv.writer`` writing as many rows of as many numbers (the baseline, measured
    in the same run). CPU time, so other work on a shared box does not move the number much.

Targets: serving ≤ 50 % of one core for 20 machines at 10 Hz; record ≤ 30 s for a week of one
pump, so the in-process rate must be at least twice 7 x 86,400 / 30 rows/s.
The machine kinds have 4 to 6 signals each plus state and parts counter; ``--tags 50`` (default)
fills every machine up to 50 tags with the simulator's auxiliary tags (``extra_tags``).

Run: .venv/bin/python bench/simulator_load.py [--machines 20] [--seconds 20] [--only record]
"""

from __future__ import annotations

import argparse
import asyncio
import csv
import io
import logging
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from simulators import Simulation  # noqa: E402
from simulators.record import write_csv  # noqa: E402
from simulators.scenario import parse_scenario  # noqa: E402

KINDS = ["pump", "press", "cnc", "conveyor", "compressor"]
FAULT_FOR = {"pump": "bearing_wear", "press": "leak", "cnc": "bearing_wear", "conveyor": "misalignment",
             "compressor": "overheating"}  # fmt: skip

CLIENT = """
import sys, time
from pymodbus.client import ModbusTcpClient
port, units, seconds, tags = int(sys.argv[1]), int(sys.argv[2]), float(sys.argv[3]), int(sys.argv[4])
client = ModbusTcpClient("127.0.0.1", port=port)
client.connect()
reads = 0
end = time.monotonic() + seconds
while time.monotonic() < end:
    started = time.monotonic()
    for unit in range(1, units + 1):
        client.read_input_registers(0, count=2 * tags, device_id=unit)
        client.read_holding_registers(100, count=3, device_id=unit)
        reads += 2
    time.sleep(max(0.0, 1.0 - (time.monotonic() - started)))
client.close()
print(reads)
"""


async def serving(machines: int, seconds: float, tags_per_machine: int) -> None:
    ids = {f"m{index:02d}": KINDS[index % len(KINDS)] for index in range(machines)}
    extra = max(0, tags_per_machine - 8)  # the kinds have 4-6 signals plus state and parts counter
    async with Simulation(seed=1, machines=ids, update_interval=0.1, extra_tags=extra) as sim:
        tags = sum(len(sim.signals(m)) + 2 for m in sim.machine_ids)
        await sim.wait_updates(5)
        client = await asyncio.create_subprocess_exec(
            sys.executable,
            "-c",
            CLIENT,
            str(sim.modbus.port),
            str(machines),
            str(seconds),
            str(min(len(sim.signals(m)) for m in sim.machine_ids)),
            stdout=asyncio.subprocess.PIPE,
        )
        cpu_before, wall_before, updates_before = time.process_time(), time.monotonic(), sim.update_count
        out, _ = await client.communicate()
        cpu = time.process_time() - cpu_before
        wall = time.monotonic() - wall_before
        rate = (sim.update_count - updates_before) / wall
        print(
            f"serving   {machines} machines, {tags} tags, OPC UA + Modbus, {rate:.1f} updates/s: "
            f"{cpu / wall:.0%} of one core  (target <= 50 %; client made {out.decode().strip()} reads)"
        )
        print(f"writes seen: {sim.write_count}")


def record() -> None:
    """``edge-sim record`` of 7 simulated days at 1 Hz, one machine of every kind, each with a fault."""
    with tempfile.TemporaryDirectory() as folder:
        for kind in KINDS:
            scenario = Path(folder) / f"{kind}.yaml"
            scenario.write_text(
                f"seed: 1\nmachines: {{{kind}-1: {kind}}}\n"
                f"faults:\n  - {{machine: {kind}-1, fault: {FAULT_FOR[kind]}, at: 3d, duration: 1d}}\n"
            )
            out = Path(folder) / f"{kind}.csv"
            started = time.monotonic()
            subprocess.run(
                [sys.executable, "-m", "simulators", "record", "--scenario", str(scenario), "--duration", "7d",
                 "--out", str(out)],
                check=True, capture_output=True,
            )  # fmt: skip
            elapsed = time.monotonic() - started
            with out.open() as rows:
                count = sum(1 for _ in rows) - 1
            print(
                f"record    7 days of one {kind:<10} at 1 Hz: {count} rows in {elapsed:5.1f} s  (target <= 60 s each)"
            )


RATE_TARGET = 2 * 7 * 86400 / 30
"""rows/s: a week of one pump at 1 Hz in 30 s, with a 2x margin."""


def record_rate(hours: int = 6) -> None:
    """Rows per CPU second of ``write_csv`` in this process, and of ``csv.writer`` for the same rows."""
    scenario = parse_scenario("machines: [pump-1]\nfaults:\n  - {machine: pump-1, fault: bearing_wear, at: 1h}\n")
    rows = hours * 3600
    out = io.StringIO()
    began = time.process_time()
    write_csv(scenario, rows, out)
    rate = rows / (time.process_time() - began)
    width = len(out.getvalue().split("\n", 1)[0].split(","))
    row = [f"{index * 0.123456:.6f}" for index in range(width)]
    writer = csv.writer(io.StringIO())
    began = time.process_time()
    for _ in range(rows):
        writer.writerow(row)
    baseline = rows / (time.process_time() - began)
    print(
        f"record    {hours} h of one pump in process: {rate:,.0f} rows/s CPU (target >= {RATE_TARGET:,.0f}); "
        f"baseline csv.writer, {width} columns: {baseline:,.0f} rows/s; record is {rate / baseline:.0%} of it"
    )


def main() -> None:
    logging.basicConfig(level=logging.ERROR)
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--machines", type=int, default=20)
    parser.add_argument("--seconds", type=float, default=20.0)
    parser.add_argument("--tags", type=int, default=50, help="tags per machine (auxiliary tags fill up to it)")
    parser.add_argument("--only", choices=["serving", "record"], help="run one part only")
    args = parser.parse_args()
    if args.only in (None, "serving"):
        asyncio.run(serving(args.machines, args.seconds, args.tags))
    if args.only in (None, "record"):
        record_rate()
        record()


if __name__ == "__main__":
    main()
