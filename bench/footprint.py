"""Footprint: RSS of a running agent polling 1,000 tags with the alert engine on.

The simulators run in this process (20 machines x 50 tags, OPC UA for the first machine and
Modbus for the rest); the agent runs as ``edge-agent run`` in a child process, as in a plant,
so its RSS is the agent's alone. By default it publishes to a local Mosquitto and serves its
status page, as deployed; ``--no-mqtt`` / ``--no-web`` measure without them. Printed every
10 s (RSS split into anonymous memory and mapped files, and the thread count) and at the end;
the target is <= 100 MB = 95.4 MiB (Neuron asks 128 MB for 100 tags on a Pi 3).

The status page's hour of trend per tag (edge_agent/web/history.py) is allocated and filled
when a machine and its tags are first seen, so it is in the RSS from the first polls on: a run
of a few minutes sees all of it. The results and where the memory goes: docs/models.md, Footprint.

Run: .venv/bin/python -m bench.footprint [--seconds 60] [--machines 20] [--tags 50] [--no-mqtt] [--no-web]
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import logging
import sys
import tempfile
import time
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from edge_agent.commands.demo import DEMO_ALERTS, demo_config  # noqa: E402
from simulators import Simulation  # noqa: E402
from tests.helpers.servers import Mosquitto, free_port  # noqa: E402

KINDS = ["pump", "press", "cnc", "conveyor", "compressor"]
MB_PER_MIB = 1.048576
POLL_S = 1.0  # edge_agent.commands.demo.DEMO_INTERVAL


def status_mib(pid: int) -> dict[str, float]:
    """VmRSS split into anonymous (heap, arenas, numpy) and file-backed (shared libraries) parts, in MiB."""
    values: dict[str, float] = {}
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        key, _, rest = line.partition(":")
        if key in ("VmRSS", "RssAnon", "RssFile", "Threads"):
            number = int(rest.split()[0])
            values[key] = number if key == "Threads" else number / 1024
    return values


async def main() -> None:
    logging.basicConfig(level=logging.ERROR)
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seconds", type=float, default=60.0)
    parser.add_argument("--machines", type=int, default=20)
    parser.add_argument("--tags", type=int, default=50)
    parser.add_argument("--no-mqtt", action="store_true", help="no broker: the agent publishes nothing")
    parser.add_argument("--no-web", action="store_true", help="no status page (and so no trend history)")
    args = parser.parse_args()
    ids = {f"m{index:02d}": KINDS[index % len(KINDS)] for index in range(args.machines)}
    with tempfile.TemporaryDirectory() as folder, contextlib.ExitStack() as servers:
        mqtt = None
        if not args.no_mqtt:
            broker = servers.enter_context(Mosquitto(Path(folder) / "broker"))
            mqtt = {"host": broker.host, "port": broker.port}
        async with Simulation(seed=1, machines=ids, update_interval=0.1, extra_tags=max(0, args.tags - 8)) as sim:
            alerts = {**DEMO_ALERTS, "window": "10s", "hop": "5s", "learn_after": "170s", "data_dir": folder}
            config = demo_config(sim, mqtt, alerts=alerts).model_dump(mode="json", exclude_unset=True)
            config["outbox"] = {"path": str(Path(folder) / "outbox.db")}
            if not args.no_web:
                config["web"] = {"host": "127.0.0.1", "port": free_port()}
            tags = sum(len(m["tags"]) for m in config["machines"])
            config_file = Path(folder) / "agent.yaml"
            config_file.write_text(yaml.safe_dump(config))
            agent = await asyncio.create_subprocess_exec(
                sys.executable,
                "-m",
                "edge_agent",
                "run",
                str(config_file),
                stdout=asyncio.subprocess.DEVNULL,
                stderr=asyncio.subprocess.DEVNULL,
            )
            outputs = ", ".join(
                name for name, on in (("MQTT", mqtt is not None), ("status page", not args.no_web)) if on
            )
            print(
                f"agent: {len(config['machines'])} machines, {tags} tags at {1 / POLL_S:g} Hz,"
                f" alerts on (learning after 170 s), {outputs or 'no outputs'}"
            )
            started = time.monotonic()
            peak = 0.0
            try:
                while time.monotonic() - started < args.seconds:
                    await asyncio.sleep(10)
                    now = status_mib(agent.pid)
                    rss = now["VmRSS"]
                    peak = max(peak, rss)
                    print(
                        f"  t={time.monotonic() - started:4.0f} s  RSS {rss:6.1f} MiB"
                        f"  (anon {now['RssAnon']:5.1f}, files {now['RssFile']:5.1f}, {now['Threads']:.0f} threads)"
                    )
            finally:
                agent.terminate()
                await agent.wait()
            print(f"peak RSS {peak:.1f} MiB = {peak * MB_PER_MIB:.1f} MB  (target <= 100 MB = 95.4 MiB)")
            print(f"writes seen by the simulators: {sim.write_count}")


if __name__ == "__main__":
    asyncio.run(main())
