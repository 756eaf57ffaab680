"""Pipeline benchmark: samples/s and poll→publish latency through simulators → agent → Mosquitto.

Prints, in one run:
  * baseline: the connectors alone reading the simulators flat out (no sinks),
  * pipeline: the agent polling the same machines flat out and publishing to a real Mosquitto,
    with a subscriber measuring samples/s received and latency from poll to broker delivery
    (p50 / p99),
and the ratio of the two, so a regression shows up as a number, not a feeling.

Run: .venv/bin/python bench/pipeline.py [--seconds 10] [--interval 0.01]
Needs Debian's mosquitto (scripts/test installs it).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import sys
import time
from pathlib import Path

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from edge_agent.config import AgentConfig
from edge_agent.demo import demo_config
from edge_agent.runtime import Agent
from simulators import Simulation
from tests.servers import Mosquitto


def flat_out(config: AgentConfig, interval: float) -> AgentConfig:
    data = config.model_dump(mode="json", exclude_unset=True)
    for machine in data["machines"]:
        machine["interval"] = interval
        machine["timeout"] = interval * 0.99
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
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seconds", type=float, default=10.0)
    parser.add_argument("--interval", type=float, default=0.01, help="poll interval for the pipeline run")
    args = parser.parse_args()
    with Mosquitto() as broker:
        async with Simulation(seed=1, update_interval=0.05) as sim:
            config = flat_out(demo_config(sim), args.interval)
            tags = sum(len(m.tags) for m in config.machines)
            print(f"machines: {len(config.machines)} (1 OPC UA, {len(config.machines) - 1} Modbus), tags: {tags}")
            base = await baseline(config, args.seconds)
            print(f"baseline  connectors alone, flat out:        {base:10.0f} samples/s")
            rate, latencies = await pipeline(config, broker.port, args.seconds)
            print(
                f"pipeline  agent -> Mosquitto -> subscriber:  {rate:10.0f} samples/s  ({rate / base:.0%} of baseline)"
            )
            print(
                f"latency   poll -> delivered to subscriber:    p50 {percentile(latencies, 50) * 1000:.2f} ms"
                f"  p99 {percentile(latencies, 99) * 1000:.2f} ms  ({len(latencies)} batches)"
            )
            print(f"writes seen by the simulators: {sim.write_count}")


if __name__ == "__main__":
    asyncio.run(main())
