"""The chaos rig: simulated plant → ``edge-agent run`` → TCP proxy → Mosquitto → ``edge-agent ingest`` → InfluxDB 1.x.

Agent and bridge run as subprocesses started exactly as an operator starts them
(``python -m edge_agent run|ingest cfg.yaml``), so ``kill -9`` is a real SIGKILL. Between agent
and broker sits a small TCP proxy the test controls (pass, drop, blackhole), to cut the network
without touching either end. A plain MQTT subscriber with a persistent session records every
telemetry key the broker delivered; the agent's outbox file holds the counters the agent itself
keeps (appended and dropped samples, in the same transactions as the data).

The machines are read over Modbus only: a Modbus sample's timestamp is the moment its answer
arrived, unique per poll, so every sample appended is a distinct InfluxDB point and counts can be
compared exactly. (An OPC UA source timestamp can repeat when a poll outruns the simulator.)
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import signal
import sqlite3
import sys
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

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
Mode = Literal["pass", "drop", "blackhole"]


class TcpProxy:
    """A loopback TCP proxy: ``pass`` forwards, ``drop`` closes every connection and refuses new
    ones at once, ``blackhole`` keeps connections open but forwards nothing (a dead route: the
    peers only notice by their own timeouts)."""

    def __init__(self, target_port: int) -> None:
        self.target_port = target_port
        self.mode: Mode = "pass"
        self.port = 0
        self._server: asyncio.Server | None = None
        self._writers: set[asyncio.StreamWriter] = set()
        self._tasks: set[asyncio.Task[None]] = set()

    async def start(self) -> None:
        self._server = await asyncio.start_server(self._accept, "127.0.0.1", 0)
        self.port = self._server.sockets[0].getsockname()[1]

    def set_mode(self, mode: Mode) -> None:
        self.mode = mode
        if mode == "drop":
            for writer in list(self._writers):
                writer.transport.abort()
            self._writers.clear()

    async def close(self) -> None:
        if self._server is not None:
            self._server.close()
        self.set_mode("drop")
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        if self._server is not None:
            await self._server.wait_closed()

    async def _accept(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        if self.mode == "drop":
            writer.transport.abort()
            return
        self._writers.add(writer)
        if self.mode == "blackhole":
            self._spawn(self._pipe(reader, None), "proxy:swallow")
            return
        try:
            async with asyncio.timeout(5):
                up_reader, up_writer = await asyncio.open_connection("127.0.0.1", self.target_port)
        except (OSError, TimeoutError):
            writer.transport.abort()
            self._writers.discard(writer)
            return
        self._writers.add(up_writer)
        self._spawn(self._pipe(reader, up_writer), "proxy:up")
        self._spawn(self._pipe(up_reader, writer), "proxy:down")

    def _spawn(self, coro: Any, name: str) -> None:
        task = asyncio.create_task(coro, name=name)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _pipe(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter | None) -> None:
        try:
            while chunk := await reader.read(65536):
                if self.mode != "pass" or writer is None:
                    continue  # blackhole: swallowed
                writer.write(chunk)
                await writer.drain()
        except (OSError, asyncio.IncompleteReadError):
            pass
        finally:
            if writer is not None and self.mode == "pass":
                writer.transport.abort()


class Listener:
    """A persistent-session QoS 1 subscriber: every telemetry key the broker delivered."""

    def __init__(self, port: int, prefix: str) -> None:
        self.keys: set[Key] = set()
        self.messages = 0
        self.status: dict[str, Any] | None = None  # the agent's retained status, latest
        self.client = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=unique_name("listen"), clean_session=False)
        self.client.on_message = self._on_message
        self.client.on_connect = lambda c, *_: c.subscribe(
            [(f"{prefix}/+/+/+/+/telemetry", 1), (f"{prefix}/+/_agent/+/status", 1)]
        )
        # paho annotates int seconds, but its wait loop sleeps fractions; 0.2 s keeps reconnects fast
        self.client.reconnect_delay_set(0.2, 1)  # type: ignore[arg-type]
        self.client.connect("127.0.0.1", port, keepalive=5)
        self.client.loop_start()

    def _on_message(self, _client: mqtt.Client, _userdata: object, message: mqtt.MQTTMessage) -> None:
        payload = json.loads(message.payload)
        if message.topic.endswith("/status"):
            self.status = payload
            return
        self.messages += 1
        for sample in payload["samples"]:
            self.keys.add((payload["machine"], sample["tag"], sample["t"]))

    def close(self) -> None:
        self.client.loop_stop()
        self.client.disconnect()


@dataclass
class OutboxCounters:
    """What the agent's outbox file says (read-only, beside the running agent: WAL allows it)."""

    appended_samples: int
    dropped_samples: int
    dropped_batches: int
    waiting_batches: int


def read_outbox(path: Path) -> OutboxCounters:
    if not path.exists():
        return OutboxCounters(0, 0, 0, 0)
    db = sqlite3.connect(f"file:{path}?mode=ro", uri=True, timeout=5)
    try:
        counters = dict(db.execute("SELECT name, value FROM counters").fetchall())
        waiting = db.execute("SELECT COUNT(*) FROM entries").fetchone()[0]
    except sqlite3.OperationalError as exc:
        if "no such table" not in str(exc):
            raise
        return OutboxCounters(0, 0, 0, 0)  # the agent is creating the file right now
    finally:
        db.close()
    return OutboxCounters(
        int(counters.get("appended_samples", 0)),
        int(counters.get("dropped_samples", 0)),
        int(counters.get("dropped_batches", 0)),
        int(waiting),
    )


@dataclass
class Rig:
    """Everything of one chaos run. ``start_agent``/``start_bridge`` (re)start the processes."""

    sim: Simulation
    broker: Mosquitto
    influx: InfluxDB1
    proxy: TcpProxy
    listener: Listener
    directory: Path
    database: str
    prefix: str
    agent_config: Path
    bridge_config: Path
    outbox_path: Path
    agent: asyncio.subprocess.Process | None = None
    bridge: asyncio.subprocess.Process | None = None
    runs: dict[str, int] = field(default_factory=dict)

    # ------------------------------------------------------------ processes
    async def _spawn(self, command: str, config: Path) -> asyncio.subprocess.Process:
        number = self.runs.get(command, 0) + 1
        self.runs[command] = number
        log = self.directory / f"{command}-{number}.log"
        with log.open("wb") as handle:
            return await asyncio.create_subprocess_exec(
                sys.executable, "-m", "edge_agent", command, str(config),
                stdout=handle, stderr=asyncio.subprocess.STDOUT,
            )  # fmt: skip

    async def start_agent(self) -> None:
        self.agent = await self._spawn("run", self.agent_config)

    async def start_bridge(self) -> None:
        self.bridge = await self._spawn("ingest", self.bridge_config)

    @staticmethod
    async def kill9(process: asyncio.subprocess.Process | None) -> None:
        assert process is not None
        assert process.returncode is None, "the process had already died"
        process.send_signal(signal.SIGKILL)
        await process.wait()

    @staticmethod
    async def interrupt(process: asyncio.subprocess.Process | None) -> None:
        """SIGINT and a clean exit within 10 s."""
        assert process is not None
        process.send_signal(signal.SIGINT)
        async with asyncio.timeout(10):
            code = await process.wait()
        assert code == 0

    def logs(self) -> str:
        return "\n".join(
            f"===== {p.name}\n{p.read_text(errors='replace')[-3000:]}" for p in sorted(self.directory.glob("*.log"))
        )

    def alive(self) -> None:
        for name, process in (("agent", self.agent), ("bridge", self.bridge)):
            if process is not None and process.returncode not in (None, 0, -9):
                raise AssertionError(f"{name} exited with {process.returncode}\n{self.logs()}")

    async def bridge_is_subscribed(self) -> None:
        """Publish a probe until InfluxDB and the listener have it: both subscriptions are live then."""
        probe = encode_json(
            Batch("probe", (Sample("alive", 1.0, time.time_ns()),)), Origin("demo", "lab", "line-1", "probe")
        )
        client = mqtt.Client(CallbackAPIVersion.VERSION2)
        client.connect("127.0.0.1", self.broker.port)
        client.loop_start()
        try:
            for _ in range(100):
                client.publish(f"{self.prefix}/demo/lab/line-1/probe/telemetry", probe, qos=1)
                rows = await asyncio.to_thread(
                    self.influx.query, "SELECT * FROM telemetry WHERE machine = 'probe'", self.database
                )
                if rows and any(key[0] == "probe" for key in self.listener.keys):
                    return
                self.alive()
                await asyncio.sleep(0.2)
            raise AssertionError(f"the bridge did not store a probe within 20 s\n{self.logs()}")
        finally:
            client.loop_stop()
            client.disconnect()

    # ------------------------------------------------------------ observations
    def outbox(self) -> OutboxCounters:
        return read_outbox(self.outbox_path)

    def stored_keys(self) -> list[Key]:
        rows = self.influx.query(
            "SELECT quality, machine, \"tag\" FROM telemetry WHERE machine != 'probe'", self.database
        )
        return [(r["machine"], r["tag"], r["time"]) for r in rows]

    async def wait_samples(self, more: int, within: float = 60) -> None:
        """Until the agent's outbox has taken ``more`` samples than now (i.e. polling goes on)."""
        target = (await asyncio.to_thread(self.outbox)).appended_samples + more

        async def stored_more() -> bool:
            self.alive()
            return (await asyncio.to_thread(self.outbox)).appended_samples >= target

        await wait_until(stored_more, within, f"the agent to store {more} more samples", interval=0.2, detail=self.logs)

    async def finish_and_check(self, *, expect_drops: bool = False, within: float = 90) -> OutboxCounters:
        """Stop the machines, let everything drain, stop both processes cleanly, then check exact counts.

        Samples the agent appended = points in InfluxDB + samples it counted as dropped; the broker
        delivered exactly the keys that are in InfluxDB; InfluxDB holds each key once.
        """
        await self.sim.stop_server("modbus")  # no new batches: the outbox can drain to empty

        stored: list[Key] = []

        async def drained() -> bool:
            self.alive()
            counters = await asyncio.to_thread(self.outbox)
            stored[:] = await asyncio.to_thread(self.stored_keys)
            return counters.waiting_batches == 0 and len(stored) + counters.dropped_samples == counters.appended_samples

        def state() -> str:
            return (
                f"{self.outbox()}, {len(self.stored_keys())} points in InfluxDB, "
                f"{len(self.real_keys())} keys seen on the broker\n{self.logs()}"
            )

        await wait_until(drained, within, "the outbox to drain", interval=0.5, detail=state)
        await self.interrupt(self.agent)
        await wait_until(lambda: set(stored) <= self.real_keys(), 15, "the listener saw every key")
        await self.interrupt(self.bridge)
        final = await asyncio.to_thread(self.outbox)
        stored = await asyncio.to_thread(self.stored_keys)
        assert final.waiting_batches == 0
        assert len(stored) == len(set(stored)), "a point is stored twice"
        assert len(stored) + final.dropped_samples == final.appended_samples, (final, len(stored))
        assert set(stored) == self.real_keys(), "InfluxDB holds exactly what the broker delivered"
        assert (final.dropped_samples > 0) == expect_drops, final
        assert self.sim.write_count == 0, "the agent sent a write request to a machine"
        return final

    def real_keys(self) -> set[Key]:
        return {key for key in self.listener.keys if key[0] != "probe"}


def write_configs(
    directory: Path, sim: Simulation, proxy_port: int, broker_port: int, influx_url: str, database: str, **outbox: Any
) -> tuple[Path, Path, Path, str]:
    """The agent's config (broker through the proxy) and the bridge's (broker directly)."""
    prefix = unique_name("chaos")
    outbox_path = directory / "outbox.sqlite"
    config = demo_config(sim, use_opcua=False).model_dump(mode="json", exclude_unset=True)
    for machine in config["machines"]:
        machine["interval"] = "200ms"
    # keepalive 2 s: a blackholed connection is noticed within seconds (the default is 30 s).
    config["mqtt"] = {
        "host": "127.0.0.1", "port": proxy_port, "topic_prefix": prefix, "client_id": unique_name("agent"),
        "keepalive": "2s", "connect_timeout": "2s",
    }  # fmt: skip
    config["influxdb"] = {"version": 1, "url": influx_url, "database": database, "timeout": "3s"}
    config["ingest"] = {"client_id": unique_name("ingest"), "flush_interval": "200ms"}
    config["outbox"] = {"path": str(outbox_path), **outbox}
    bridge = json.loads(json.dumps(config))
    bridge["mqtt"] = {"host": "127.0.0.1", "port": broker_port, "topic_prefix": prefix, "keepalive": "5s"}
    agent_file, bridge_file = directory / "agent.yaml", directory / "bridge.yaml"
    agent_file.write_text(yaml.safe_dump(config))
    bridge_file.write_text(yaml.safe_dump(bridge))
    return agent_file, bridge_file, outbox_path, prefix


@pytest.fixture
async def make_rig(fresh_mosquitto: Mosquitto, fresh_influxdb1: InfluxDB1, tmp_path: Path) -> AsyncIterator[Any]:
    """``await make_rig(**outbox_options)``: the whole pipeline running, bridge subscribed, agent started."""
    made: list[Rig] = []
    async with contextlib.AsyncExitStack() as stack:

        async def make(**outbox: Any) -> Rig:
            sim = await stack.enter_async_context(
                Simulation(seed=5, update_interval=0.1, opcua_port=None, modbus_port=0)
            )
            proxy = TcpProxy(fresh_mosquitto.port)
            await proxy.start()
            stack.push_async_callback(proxy.close)
            database = unique_name("db")
            await asyncio.to_thread(fresh_influxdb1.create_database, database)
            agent_file, bridge_file, outbox_path, prefix = write_configs(
                tmp_path, sim, proxy.port, fresh_mosquitto.port, fresh_influxdb1.url, database, **outbox
            )
            listener = Listener(fresh_mosquitto.port, prefix)
            stack.callback(listener.close)
            rig = Rig(
                sim, fresh_mosquitto, fresh_influxdb1, proxy, listener, tmp_path, database, prefix,
                agent_file, bridge_file, outbox_path,
            )  # fmt: skip
            made.append(rig)
            await rig.start_bridge()
            await rig.bridge_is_subscribed()
            await rig.start_agent()
            await rig.wait_samples(50, within=30)
            return rig

        try:
            yield make
        finally:
            for rig in made:
                for process in (rig.agent, rig.bridge):
                    if process is not None and process.returncode is None:
                        process.kill()
                        await process.wait()
