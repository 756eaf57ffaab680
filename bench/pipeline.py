"""Pipeline benchmark: samples/s and poll→publish latency through simulators → agent → Mosquitto.

Prints, in one run:
  * baseline: the connectors alone reading the simulators back to back (no sinks): the most
    the protocol side can deliver on this machine;
  * pipeline: the agent polling the same machines every ``--interval`` and publishing to a real
    Mosquitto, with a subscriber measuring the samples/s that arrive against the samples/s the
    schedule asks for, and the latency from poll to delivery at the subscriber (p50 / p99).
A regression shows up as a number (delivered share, latency, headroom), not a feeling.

Run: .venv/bin/python bench/pipeline.py [--seconds 10] [--interval 0.01]
Needs Debian's mosquitto (scripts/test installs it).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from edge_agent.commands.demo import demo_config
from edge_agent.runtime.agent import Agent
from edge_agent.runtime.config import AgentConfig
from simulators import Simulation
from tests.helpers.servers import Mosquitto


def flat_out(config: AgentConfig, interval: float) -> AgentConfig:
    data = config.model_dump(mode="json", exclude_unset=True)
    for machine in data["machines"]:
        machine["interval"] = interval
        machine["timeout"] = interval * 0.99
        if machine["type"] == "opcua":
            machine["connect_timeout"] = 5.0
    return AgentConfig.model_validate(data)


async def baseline(config: AgentConfig, seconds: float) -> float:
    """Samples/s the connectors reach alone, each machine read back to back."""
    counts = [0] * len(config.machines)

    async def loop(index: int) -> None:
        connector = config.machines[index].build_connector()
        await connector.connect()
        try:
            end = time.monotonic() + seconds
            while time.monotonic() < end:
                counts[index] += len((await connector.read()).samples)
        finally:
            await connector.close()

    await asyncio.gather(*(loop(i) for i in range(len(config.machines))))
    return sum(counts) / seconds


async def pipeline(config: AgentConfig, broker_port: int, seconds: float) -> tuple[float, list[float]]:
    """Samples/s delivered by the broker and poll→delivery latencies (s)."""
    data = config.model_dump(mode="json", exclude_unset=True)
    data["mqtt"] = {"host": "127.0.0.1", "port": broker_port, "topic_prefix": "bench"}
    config = AgentConfig.model_validate(data)
    received = 0
    latencies: list[float] = []
    measuring = False

    def on_message(_c: mqtt.Client, _u: object, message: mqtt.MQTTMessage) -> None:
        nonlocal received
        if not measuring:
            return
        payload = json.loads(message.payload)
        received += len(payload["samples"])
        latencies.append((time.time_ns() - payload["polled_at"]) / 1e9)

    subscriber = mqtt.Client(callback_api_version=CallbackAPIVersion.VERSION2)
    subscriber.on_message = on_message
    subscriber.connect("127.0.0.1", broker_port)
    subscriber.subscribe("bench/+/+/+/+/telemetry", qos=1)
    subscriber.loop_start()
    stop = asyncio.Event()
    agent = Agent(config)
    task = asyncio.create_task(agent.run(stop), name="bench-agent")
    await asyncio.sleep(2)  # warm-up: connections and first polls; not part of the measurement
    measuring = True
    started = time.monotonic()
    await asyncio.sleep(seconds)
    measuring = False
    elapsed = time.monotonic() - started
    stop.set()
    await task
    subscriber.loop_stop()
    subscriber.disconnect()
    return received / elapsed, latencies


def percentile(values: list[float], q: float) -> float:
    return statistics.quantiles(values, n=100)[int(q) - 1] if len(values) >= 2 else float("nan")


async def main() -> None:
    logging.basicConfig(level=logging.ERROR)
    os.environ["STATE_DIRECTORY"] = tempfile.mkdtemp(prefix="bench-pipeline-")  # a fresh outbox
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seconds", type=float, default=10.0)
    parser.add_argument(
        "--interval", type=float, default=0.05, help="poll interval of each machine (flat out when reads take longer)"
    )
    args = parser.parse_args()
    with Mosquitto() as broker:
        async with Simulation(seed=1, update_interval=0.05) as sim:
            config = flat_out(demo_config(sim), args.interval)
            relaxed = demo_config(sim)  # same machines, 1 s timeouts: the baseline reads back to back
            tags = sum(len(m.tags) for m in config.machines)
            print(f"machines: {len(config.machines)} (1 OPC UA, {len(config.machines) - 1} Modbus), tags: {tags}")
            base = await baseline(relaxed, args.seconds)
            print(f"baseline  connectors alone, back to back:    {base:10.0f} samples/s")
            rate, latencies = await pipeline(config, broker.port, args.seconds)
            expected = tags / args.interval
            print(
                f"pipeline  agent -> Mosquitto -> subscriber:  {rate:10.0f} samples/s  "
                f"({rate / expected:.0%} of the {expected:.0f}/s scheduled; "
                f"connectors alone could do {base / expected:.0f}x)"
            )
            print(
                f"latency   poll -> delivered to subscriber:    p50 {percentile(latencies, 50) * 1000:.2f} ms"
                f"  p99 {percentile(latencies, 99) * 1000:.2f} ms  ({len(latencies)} batches)"
            )
            print(f"writes seen by the simulators: {sim.write_count}")


if __name__ == "__main__":
    asyncio.run(main())
