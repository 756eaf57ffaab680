"""End to end on real servers: simulators → `edge-agent run` → Mosquitto → `edge-agent ingest` → InfluxDB 1.x.

Both agent processes are started through the CLI exactly as an operator would, from a YAML
file. The test listens on the broker too, so it can prove that every sample published arrived
in InfluxDB unchanged (value, timestamp, tags), exactly once, and that the values are the ones
the simulators served.
"""

from __future__ import annotations

import asyncio
import json
import signal
import sys
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import paho.mqtt.client as mqtt
import pytest
import yaml
from paho.mqtt.enums import CallbackAPIVersion

from edge_agent.commands.demo import demo_config
from edge_agent.core.origin import Origin
from edge_agent.core.samples import Batch, Sample
from edge_agent.delivery.payloads import encode_json
from simulators import Simulation
from tests.helpers.servers import InfluxDB1, Mosquitto, unique_name
from tests.helpers.waiting import wait_until

Key = tuple[str, str, int]  # machine, tag, timestamp ns


class Listener:
    """A plain MQTT subscriber that records every telemetry sample published."""

    def __init__(self, port: int, prefix: str) -> None:
        self.samples: dict[Key, Any] = {}
        self.messages = 0
        self.client = mqtt.Client(callback_api_version=CallbackAPIVersion.VERSION2)
        self.client.on_message = self._on_message
        self.client.connect("127.0.0.1", port)
        self.client.subscribe(f"{prefix}/+/+/+/+/telemetry", qos=1)
        self.client.loop_start()

    def _on_message(self, _client: mqtt.Client, _userdata: object, message: mqtt.MQTTMessage) -> None:
        payload = json.loads(message.payload)
        self.messages += 1
        for sample in payload["samples"]:
            self.samples[(payload["machine"], sample["tag"], sample["t"])] = sample["v"]

    def close(self) -> None:
        self.client.loop_stop()
        self.client.disconnect()


async def spawn(*args: str, log: Path) -> asyncio.subprocess.Process:
    with log.open("wb") as handle:
        return await asyncio.create_subprocess_exec(
            sys.executable, "-m", "edge_agent", *args, stdout=handle, stderr=asyncio.subprocess.STDOUT
        )


async def interrupt(process: asyncio.subprocess.Process, log: Path) -> None:
    """SIGINT, then require a clean exit within 5 s."""
    process.send_signal(signal.SIGINT)
    try:
        code = await asyncio.wait_for(process.wait(), 5)
    except TimeoutError:
        process.kill()
        raise AssertionError(f"process did not stop within 5 s of SIGINT:\n{log.read_text()}") from None
    assert code == 0, log.read_text()


async def bridge_is_subscribed(broker: Mosquitto, influx: InfluxDB1, database: str, prefix: str) -> None:
    """Publish a probe message until it shows up in InfluxDB: then the bridge's subscription is live."""
    probe = encode_json(
        Batch("probe", (Sample("alive", 1.0, time.time_ns()),)), Origin("demo", "lab", "line-1", "probe")
    )
    client = mqtt.Client(callback_api_version=CallbackAPIVersion.VERSION2)
    client.connect("127.0.0.1", broker.port)
    client.loop_start()
    try:

        def arrived() -> bool:
            return bool(influx.query("SELECT * FROM telemetry WHERE machine = 'probe'", database))

        async def probe_stored() -> bool:
            client.publish(f"{prefix}/demo/lab/line-1/probe/telemetry", probe, qos=1)
            return await asyncio.to_thread(arrived)

        await wait_until(probe_stored, 20, "the ingest bridge to store a probe message", interval=0.2)
    finally:
        client.loop_stop()
        client.disconnect()


@pytest.fixture
async def sim() -> AsyncIterator[Simulation]:
    async with Simulation(seed=11, update_interval=0.1) as simulation:
        yield simulation


async def test_values_arrive_in_influxdb_unchanged(
    sim: Simulation, mosquitto: Mosquitto, influxdb1: InfluxDB1, tmp_path: Path
) -> None:
    prefix, database = unique_name("e2e"), unique_name("db")
    await asyncio.to_thread(influxdb1.create_database, database)
    config = demo_config(sim).model_dump(mode="json", exclude_unset=True)
    for machine in config["machines"]:
        machine["interval"] = "300ms"
    config["mqtt"] = {"host": "127.0.0.1", "port": mosquitto.port, "topic_prefix": prefix}
    config["influxdb"] = {"version": 1, "url": influxdb1.url, "database": database}
    config["ingest"] = {"client_id": unique_name("ingest"), "flush_interval": "200ms"}
    config_file = tmp_path / "plant.yaml"
    config_file.write_text(yaml.safe_dump(config))

    listener = Listener(mosquitto.port, prefix)
    ingest = await spawn("ingest", str(config_file), log=tmp_path / "ingest.log")
    agent: asyncio.subprocess.Process | None = None
    try:

        def rows() -> list[dict[str, Any]]:
            return influxdb1.query("SELECT * FROM telemetry WHERE machine != 'probe'", database)

        await bridge_is_subscribed(mosquitto, influxdb1, database, prefix)
        agent = await spawn("run", str(config_file), log=tmp_path / "agent.log")

        tags = {m["id"]: [t["name"] for t in m["tags"]] for m in config["machines"]}
        want = sum(len(t) for t in tags.values()) * 8

        async def enough() -> bool:
            return len(await asyncio.to_thread(rows)) >= want

        async def enough_alive() -> bool:
            assert agent is not None
            assert agent.returncode is None, (tmp_path / "agent.log").read_text()
            assert ingest.returncode is None, (tmp_path / "ingest.log").read_text()
            return await enough()

        await wait_until(enough_alive, 60, "8 polls of every tag in InfluxDB", interval=0.2)
        await interrupt(agent, tmp_path / "agent.log")
        published = {key: value for key, value in listener.samples.items() if key[0] != "probe"}

        async def all_arrived() -> bool:
            return len(await asyncio.to_thread(rows)) == len(published)

        def difference() -> str:
            got = {(r["machine"], r["tag"], r["time"]) for r in rows()}
            missing, extra = set(published) - got, got - set(published)
            return (
                f"InfluxDB has {len(got)} points, {len(published)} published; "
                f"missing {sorted(missing)[:5]}, not published {sorted(extra)[:5]}\n"
                f"ingest log:\n{(tmp_path / 'ingest.log').read_text()}\n"
                f"agent log:\n{(tmp_path / 'agent.log').read_text()}"
            )

        await wait_until(all_arrived, 30, "every published sample in InfluxDB", interval=0.2, detail=difference)
        await interrupt(ingest, tmp_path / "ingest.log")
    finally:
        listener.close()
        for process in (agent, ingest):
            if process is not None and process.returncode is None:
                process.kill()
                await process.wait()

    stored = await asyncio.to_thread(rows)
    published = {key: value for key, value in published.items() if key[0] != "probe"}
    in_influx = {(r["machine"], r["tag"], r["time"]): r["value"] for r in stored}
    assert len(in_influx) == len(stored), "a sample is stored twice"
    assert in_influx == published, "InfluxDB holds exactly what the agent published, value for value"
    assert {(r["site"], r["area"], r["line"]) for r in stored} == {("demo", "lab", "line-1")}
    assert {r["quality"] for r in stored} == {"good"}

    opcua_machine, modbus_machine = config["machines"][0]["id"], config["machines"][1]["id"]
    for (machine, tag, timestamp), value in in_influx.items():
        if machine == opcua_machine:
            assert (timestamp, value) in sim.served("opcua", machine, tag), f"{machine}.{tag} at {timestamp}"
        else:
            assert value in {v for _, v in sim.served("modbus", machine, tag)}, f"{machine}.{tag} = {value}"
    for machine, names in tags.items():
        for name in names:
            values = [v for (m, t, _), v in in_influx.items() if (m, t) == (machine, name)]
            assert len(values) >= 8, f"{machine}.{name}: only {len(values)} points"
    changing = [
        name
        for name in tags[opcua_machine]
        if len({v for (m, t, _), v in in_influx.items() if (m, t) == (opcua_machine, name)}) > 1
    ]
    assert changing, "the simulated values change over time"
    assert modbus_machine in {m for m, _, _ in in_influx}
    assert sim.write_count == 0, "the agent sent a write request to a machine"
