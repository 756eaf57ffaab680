"""Delivery benchmark: the outbox's fsync cost, backlog drain speed, ingest rate and a soak.

Prints, in one run (or one part with ``--only``):
  * fsync: per-append latency of the outbox with ``synchronous=normal`` and ``full`` on this disk;
  * drain: a publisher fed at a live rate while the broker is away for ``--outage`` seconds, then
    back: how much faster the backlog drains than it filled, with live data still flowing
    (target: at least 10x);
  * ingest: points/s of ``edge-agent ingest`` (MQTT -> VictoriaMetrics' /api/v2/write) against
    influxdb-client writing the same pre-built line protocol to the same server, given lists of
    lines (the target's baseline: at least 80 %) and given one body per request (the ceiling),
    interleaved over ``--rounds`` rounds, medians. VictoriaMetrics stands in for InfluxDB 2, which
    Debian does not package; InfluxDB 1.6 has no v2 write API for influxdb-client to use;
  * soak: the real agent (``python -m edge_agent run``) polling simulators (``--soak-machines``
    machines, the first over OPC UA, the rest over Modbus, ``--soak-tags`` tags each, every
    ``--soak-interval``: by default 10 x 50 x 10 Hz = 5,000 samples/s) and publishing to Mosquitto
    for ``--minutes`` (default 2; 30 for the full soak) with a ``--soak-outage`` broker outage in
    the middle. Prints its RSS, the samples/s published (from the outbox file's counters) and the
    outbox size as it goes, then RSS by phase, the drain time and the targets (RSS growth after
    warm-up < 5 %, outbox flat, 5,000 samples/s).

Run: .venv/bin/python bench/delivery.py [--only fsync|drain|ingest|soak] [--minutes 2]
Needs Debian's mosquitto and victoria-metrics (scripts/test installs them).
"""

from __future__ import annotations

import argparse
import asyncio
import itertools
import logging
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import paho.mqtt.client as mqtt
import yaml
from influxdb_client.client.influxdb_client_async import InfluxDBClientAsync
from influxdb_client.domain.write_precision import WritePrecision
from paho.mqtt.enums import CallbackAPIVersion

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from edge_agent.commands.demo import demo_config
from edge_agent.core.origin import Origin
from edge_agent.core.samples import Batch, Sample
from edge_agent.delivery.config import InfluxConfig, MqttConfig, OutboxConfig
from edge_agent.delivery.influx_writer import make_writer
from edge_agent.delivery.outbox import KEEP_FREE_PAGES, Outbox, read_counters
from edge_agent.delivery.payloads import encode_json, sample_line
from edge_agent.delivery.publisher import MqttPublisher
from edge_agent.ingest.bridge import IngestBridge
from edge_agent.ingest.config import IngestConfig
from simulators import Simulation
from simulators.durations import parse_duration
from tests.helpers.servers import Mosquitto, VictoriaMetrics

T0 = 1_763_800_000_000_000_000


def synthetic_batch(machine: str, index: int, tags: int = 10) -> Batch:
    """One poll of ``tags`` float tags; timestamps unique per (machine, index)."""
    t = T0 + index * 1_000_000
    return Batch(machine, tuple(Sample(f"tag{k}", float(index + k) / 7, t) for k in range(tags)), polled_at_ns=t)


# ---------------------------------------------------------------- fsync
async def bench_fsync(appends: int = 2000) -> dict[str, Any]:
    payload = encode_json(synthetic_batch("m", 0), Origin("s", "a", "l", "m"))
    results: dict[str, Any] = {}
    for mode in ("normal", "full"):
        with tempfile.TemporaryDirectory(dir=Path.cwd()) as directory:
            box = Outbox(Path(directory) / "o.sqlite", max_bytes=10**9, max_age=0, synchronous=mode)
            await box.open()
            latencies = []
            for _ in range(appends):
                began = time.perf_counter()
                await box.append("edge/s/a/l/m/telemetry", payload, 10)
                latencies.append(time.perf_counter() - began)
            await box.close()
        latencies.sort()
        results[mode] = {
            "mean_ms": statistics.fmean(latencies) * 1000,
            "p99_ms": latencies[int(len(latencies) * 0.99)] * 1000,
            "appends_per_s": appends / sum(latencies),
        }
        numbers = results[mode]
        print(
            f"fsync  synchronous={mode:<6}: {numbers['mean_ms']:.3f} ms mean, {numbers['p99_ms']:.3f} ms p99 "
            f"per append of {len(payload)} bytes ({numbers['appends_per_s']:.0f} appends/s, one at a time)"
        )
    return results


# ---------------------------------------------------------------- drain
async def bench_drain(outage: float, rate: float, machines: int) -> dict[str, float]:
    """Fill during an outage at ``rate`` batches/s, then measure the drain with the feed still on."""
    with tempfile.TemporaryDirectory() as directory, Mosquitto(Path(directory) / "broker") as broker:
        config = MqttConfig(host="127.0.0.1", port=broker.port, topic_prefix="bench", keepalive=5)
        publisher = MqttPublisher(
            config, "s", client_id="bench-drain", outbox=OutboxConfig(path=str(Path(directory) / "o.sqlite"))
        )
        publisher.backoff.initial = publisher.backoff.cap = 0.2
        await publisher.start()
        origins = [Origin("s", "a", "l", f"m{i}") for i in range(machines)]
        stop = asyncio.Event()

        async def feed() -> None:
            loop = asyncio.get_running_loop()
            index, began = 0, loop.time()
            while not stop.is_set():
                for origin in origins:
                    await publisher.submit(synthetic_batch(origin.machine, index), origin)
                index += 1
                delay = began + index * machines / rate - loop.time()
                if delay > 0:
                    await asyncio.sleep(delay)

        feeder = asyncio.create_task(feed(), name="bench:feed")
        while not publisher.connected:  # noqa: ASYNC110 - polling a thread-set flag; timing is the point
            await asyncio.sleep(0.05)
        await asyncio.sleep(2)
        await asyncio.to_thread(broker.stop)
        fill_began = time.monotonic()
        start_entries = publisher.outbox.stats.entries
        await asyncio.sleep(outage)
        fill_s = time.monotonic() - fill_began
        backlog = publisher.outbox.stats.entries - start_entries
        await asyncio.to_thread(broker.start)
        drain_began = time.monotonic()
        steady = max(20, machines * 2)
        while publisher.outbox.stats.entries > steady:  # noqa: ASYNC110 - a 10 ms sampling of the backlog
            await asyncio.sleep(0.01)
        drain_s = time.monotonic() - drain_began
        stop.set()
        await feeder
        await publisher.close()
    ratio = fill_s / drain_s
    print(
        f"drain  backlog of {backlog} batches ({backlog * 10} samples) filled in {fill_s:.1f} s "
        f"at {rate:.0f} batches/s, drained in {drain_s:.2f} s "
        f"while the feed went on: {ratio:.1f}x faster than it filled"
    )
    return {"backlog": backlog, "fill_s": fill_s, "drain_s": drain_s, "ratio": ratio}


# ---------------------------------------------------------------- ingest
async def _timed(run: Any) -> tuple[float, float]:
    """(wall seconds, CPU seconds of this process) of ``await run()``."""
    cpu, began = time.process_time(), time.perf_counter()
    await run()
    return time.perf_counter() - began, time.process_time() - cpu


async def bench_ingest(messages: int, samples_per_message: int, rounds: int) -> dict[str, float]:
    """The bridge against influxdb-client writing the same points, interleaved, ``rounds`` times each.

    Three ways to get the same points into the same VictoriaMetrics, run in turn (rotated each round so
    none always goes first) and reported as medians:

    * ``list``: influxdb-client's write API given each request of 5000 pre-built lines as a list of
      str, the documented way to write line protocol with it. It is the baseline the 80 % target
      is measured against (docs/delivery.md, Measured);
    * ``body``: the bridge's own writer given the same lines, sending them as one bytes body per
      request: no per-line work in Python at all, only HTTP and the server. A ceiling, not a target:
      anything that has to decode a message costs more;
    * ``bridge``: ``edge-agent ingest`` reading the same points from Mosquitto (JSON schema 1, 50
      points a message, published beforehand into its persistent session) until all are written.

    Besides points per second (wall clock, what the target is about) it prints the CPU time this
    process spent per point, which a loaded machine disturbs much less.
    """
    origins = [Origin("s", "a", "l", f"m{i}") for i in range(10)]
    batches = [
        (origin, synthetic_batch(origin.machine, index, samples_per_message))
        for index in range(messages // len(origins))
        for origin in origins
    ]
    points = len(batches) * samples_per_message
    lines = [sample_line(origin, sample) for origin, batch in batches for sample in batch.samples]
    payloads = [(origin.topic("ingest", "telemetry"), encode_json(batch, origin)) for origin, batch in batches]
    results: dict[str, list[tuple[float, float]]] = {"list": [], "body": [], "bridge": []}
    with (
        tempfile.TemporaryDirectory() as directory,
        VictoriaMetrics(Path(directory) / "vm") as vm,
        Mosquitto(Path(directory) / "broker") as broker,
    ):
        influx = InfluxConfig(version=2, url=vm.url, org="bench", bucket="bench", token="unused")
        writer = make_writer(influx)
        mqtt_config = MqttConfig(host="127.0.0.1", port=broker.port, topic_prefix="ingest")
        ingest = IngestConfig(client_id="bench-ingest", batch_size=5000, flush_interval=0.2)

        async def body() -> None:
            for start in range(0, len(lines), 5000):
                await writer.write(lines[start : start + 5000])

        async def as_list() -> None:
            async with InfluxDBClientAsync(url=vm.url, org="bench", token="unused") as influx_client:
                write_api = influx_client.write_api()
                precision: Any = WritePrecision.NS  # annotated as WritePrecision, but its members are str
                for start in range(0, len(lines), 5000):
                    await write_api.write(bucket="bench", record=lines[start : start + 5000], write_precision=precision)

        def publish_backlog() -> None:
            client = mqtt.Client(CallbackAPIVersion.VERSION2, client_id="bench-pub")
            client.max_inflight_messages_set(1000)
            client.connect("127.0.0.1", broker.port)
            client.loop_start()
            infos = [client.publish(topic, payload, qos=1) for topic, payload in payloads]
            for info in infos:
                info.wait_for_publish(30)
            client.loop_stop()
            client.disconnect()

        async def run_bridge(until_points: int | None) -> None:
            bridge = IngestBridge(mqtt_config, ingest, writer)
            stop = asyncio.Event()
            task = asyncio.create_task(bridge.run(stop), name="bench:bridge")
            if until_points is None:
                await bridge.wait_ready()
            else:
                while bridge.stats.written_points < until_points:  # noqa: ASYNC110 - 10 ms sampling of a counter
                    await asyncio.sleep(0.01)
            stop.set()
            await task

        await run_bridge(None)  # the persistent session: from now on the broker keeps messages for it
        await body()  # warm-up: connections, the first series in the server
        for round_ in range(rounds):
            order = ["list", "body", "bridge"]
            order = order[round_ % 3 :] + order[: round_ % 3]
            for kind in order:
                if kind == "bridge":
                    await asyncio.to_thread(publish_backlog)  # not timed
                    results[kind].append(await _timed(lambda: run_bridge(points)))
                else:
                    results[kind].append(await _timed(body if kind == "body" else as_list))
        await writer.close()

    def rate(kind: str) -> float:
        return points / statistics.median(wall for wall, _ in results[kind])

    def cpu_us(kind: str) -> float:
        return statistics.median(cpu for _, cpu in results[kind]) / points * 1e6

    rates = {kind: rate(kind) for kind in results}
    for kind, label in (("list", "influxdb-client, list of lines"), ("body", "influxdb-client, one body"),
                        ("bridge", "edge-agent ingest from MQTT")):  # fmt: skip
        spread = sorted(points / wall / 1000 for wall, _ in results[kind])
        print(
            f"ingest {label:<31}: {rates[kind]:>9,.0f} points/s (median of {rounds}; "
            f"{spread[0]:,.0f}-{spread[-1]:,.0f}k), {cpu_us(kind):.2f} us CPU per point"
        )
    ratio = rates["bridge"] / rates["list"]
    print(
        f"ingest {points} points: the bridge reaches {ratio:.0%} of influxdb-client given lists of lines "
        f"(the target's baseline: 80 %) and {rates['bridge'] / rates['body']:.0%} of influxdb-client sending "
        f"one pre-built body (the ceiling)"
    )
    return {
        "points": points,
        "list_rate": rates["list"],
        "body_rate": rates["body"],
        "bridge_rate": rates["bridge"],
        "ratio": ratio,
        "bridge_cpu_us": cpu_us("bridge"),
        "list_cpu_us": cpu_us("list"),
        "body_cpu_us": cpu_us("body"),
    }


# ---------------------------------------------------------------- soak
SOAK_TARGET_RATE = 5000.0
SOAK_RSS_GROWTH_LIMIT = 5.0  # percent, after warm-up
SOAK_WARM_UP = 30.0  # s: imports, connections, SQLite cache and the first batches are done by then


def rss_kib(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    return 0


def cpu_seconds(pid: int) -> float:
    """User + system CPU time of a process (the box is shared, so wall time says little)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def outbox_bytes(outbox_path: Path) -> int:
    return sum(p.stat().st_size for p in outbox_path.parent.glob(outbox_path.name + "*"))


def file_bytes(path: Path) -> int:
    return path.stat().st_size if path.exists() else 0


def published_samples(counters: dict[str, int]) -> int:
    """Samples that left the outbox acknowledged: appended, minus still waiting, minus dropped."""
    return counters["appended_samples"] - counters["waiting_samples"] - counters["dropped_samples"]


def soak_config(
    sim: Simulation, tags: int, interval: str, port: int, outbox_path: Path, max_in_flight: int
) -> dict[str, Any]:
    """The demo's config (first machine over OPC UA without security, the rest over Modbus), every
    machine cut to ``tags`` tags (its signals, then the simulator's ``aux_NN`` tags) at ``interval``."""
    config = demo_config(sim).model_dump(mode="json", exclude_unset=True)
    for machine in config["machines"]:
        machine["interval"] = interval
        machine["tags"] = machine["tags"][:tags]
        if len(machine["tags"]) < tags:
            raise SystemExit(f"soak: machine {machine['id']} has only {len(machine['tags'])} tags, {tags} asked")
    config["mqtt"] = {"host": "127.0.0.1", "port": port, "topic_prefix": "soak", "keepalive": "5s"}
    config["outbox"] = {"path": str(outbox_path), "max_in_flight": max_in_flight}
    config["logging"] = {"level": "WARNING"}
    return config


class SoakLog:
    """One line per reading of the agent's RSS, CPU and outbox, kept for the summary."""

    def __init__(self) -> None:
        self.rows: list[dict[str, float]] = []

    def add(self, **row: float) -> None:
        self.rows.append(row)

    def between(self, start: float, end: float) -> list[dict[str, float]]:
        return [r for r in self.rows if start <= r["t"] < end]


async def bench_soak(
    minutes: float, outage: float, machines: int, tags: int, interval: str, max_in_flight: int = 100
) -> dict[str, float]:
    duration = minutes * 60
    period = parse_duration(interval)
    kinds = ["pump", "press", "cnc", "conveyor", "compressor"]
    machine_ids = [f"{kinds[i % len(kinds)]}-{i // len(kinds) + 1}" for i in range(machines)]
    # every kind has at least 4 signals; the simulator's aux tags fill the rest (state_code, last, is cut)
    extra = min(90, max(0, tags - 4))
    outage_start = duration / 2
    with tempfile.TemporaryDirectory() as directory, Mosquitto(Path(directory) / "broker") as broker:
        async with Simulation(
            seed=3, machines=machine_ids, update_interval=period, opcua_port=0, modbus_port=0, extra_tags=extra
        ) as sim:
            outbox_path = Path(directory) / "outbox.sqlite"
            config_file = Path(directory) / "agent.yaml"
            config_file.write_text(
                yaml.safe_dump(soak_config(sim, tags, interval, broker.port, outbox_path, max_in_flight))
            )
            print(
                f"soak   {machines} machines (1 OPC UA, {machines - 1} Modbus) x {tags} tags every {interval}: "
                f"{machines * tags / period:.0f} samples/s configured; {minutes:g} min, broker down "
                f"{outage:g} s from {outage_start:.0f} s; load average at start {os.getloadavg()[0]:.2f} "
                f"on {os.cpu_count()} CPUs",
                flush=True,
            )
            agent = await asyncio.create_subprocess_exec(
                sys.executable, "-m", "edge_agent", "run", str(config_file), stderr=asyncio.subprocess.DEVNULL
            )
            began = time.monotonic()
            log = SoakLog()
            broker_back = 0.0

            async def outage_in_the_middle() -> None:
                nonlocal broker_back
                await asyncio.sleep(outage_start)
                await asyncio.to_thread(broker.stop)
                await asyncio.sleep(outage)
                await asyncio.to_thread(broker.start)
                broker_back = time.monotonic() - began

            outage_task = asyncio.create_task(outage_in_the_middle(), name="bench:outage")
            next_print = 0.0
            try:
                while time.monotonic() - began < duration:
                    await asyncio.sleep(1.0)
                    elapsed = time.monotonic() - began
                    if agent.returncode is not None:
                        raise SystemExit(f"soak: the agent exited with {agent.returncode} at {elapsed:.0f} s")
                    counters = await asyncio.to_thread(read_counters, outbox_path)
                    row = {
                        "t": elapsed,
                        "rss": rss_kib(agent.pid),
                        "cpu": cpu_seconds(agent.pid),
                        "size": outbox_bytes(outbox_path),
                        "db": file_bytes(outbox_path),
                        "wal": file_bytes(outbox_path.with_name(outbox_path.name + "-wal")),
                        "waiting": counters["waiting"],
                        "appended": counters["appended_samples"],
                        "published": published_samples(counters),
                        "dropped": counters["dropped_samples"],
                        "down": 0.0 if broker.running else 1.0,
                    }
                    log.add(**row)
                    if elapsed >= next_print:
                        next_print += 10.0
                        recent = log.between(elapsed - 10.5, elapsed + 1)
                        rate = (recent[-1]["published"] - recent[0]["published"]) / max(
                            recent[-1]["t"] - recent[0]["t"], 1e-9
                        )
                        print(
                            f"soak   {elapsed:6.0f} s  RSS {row['rss'] / 1024:6.1f} MiB  "
                            f"published {rate:6.0f}/s  outbox {row['waiting']:5.0f} batch(es) waiting, "
                            f"file+wal {row['size'] / 1024:7.0f} KiB  load {os.getloadavg()[0]:.2f}"
                            + ("  [broker down]" if row["down"] else ""),
                            flush=True,
                        )
            finally:
                outage_task.cancel()
                await asyncio.gather(outage_task, return_exceptions=True)
                agent.send_signal(2)
                await agent.wait()
    return soak_summary(log, outage_start, broker_back, machines * tags / period)


def soak_summary(log: SoakLog, outage_start: float, broker_back: float, configured: float) -> dict[str, float]:
    """RSS by phase, the outbox before/at the peak/after the drain, the published rate; the targets."""
    rows = log.rows
    warm = next(r for r in rows if r["t"] >= SOAK_WARM_UP)
    before = log.between(SOAK_WARM_UP, outage_start)
    pre = before[-1] if before else warm
    end = rows[-1]
    growth = 100.0 * (end["rss"] - warm["rss"]) / warm["rss"]
    # the published rate outside the outage and its drain: the steady state the target is about
    steady_rate = (pre["published"] - warm["published"]) / max(pre["t"] - warm["t"], 1e-9)
    whole_rate = (end["published"] - warm["published"]) / max(end["t"] - warm["t"], 1e-9)
    read_rate = (end["appended"] - warm["appended"]) / max(end["t"] - warm["t"], 1e-9)
    cpu = 100.0 * (end["cpu"] - warm["cpu"]) / max(end["t"] - warm["t"], 1e-9)
    base_waiting = max((r["waiting"] for r in before), default=0.0)
    base_size = max((r["size"] for r in before), default=warm["size"])
    peak = max(rows, key=lambda r: r["waiting"])
    drained = next(
        (r for r in rows if broker_back and r["t"] >= broker_back and r["waiting"] <= max(base_waiting, 1.0)), None
    )
    drain = drained["t"] - broker_back if drained else float("nan")
    resumed = next(
        (
            b
            for a, b in itertools.pairwise(rows)
            if broker_back and b["t"] >= broker_back and b["published"] > a["published"]
        ),
        None,
    )
    reconnect = resumed["t"] - broker_back if resumed else float("nan")
    after = log.between(drained["t"] + 10, end["t"] + 1) if drained else []
    after_growth = (after[-1]["size"] - after[0]["size"]) if len(after) > 1 else float("nan")
    after_rss = (after[-1]["rss"] - after[0]["rss"]) / 1024 if len(after) > 1 else float("nan")
    back = drained is not None and end["waiting"] <= max(base_waiting, 1.0)
    kept_free = KEEP_FREE_PAGES * 4096  # SQLite's default page size
    shrunk = end["size"] <= 1.05 * base_size + kept_free
    flat = back and after_growth <= 0.05 * base_size
    print(
        f"soak   RSS after warm-up ({warm['t']:.0f} s) {warm['rss'] / 1024:.1f} MiB, before the outage "
        f"{pre['rss'] / 1024:.1f} MiB ({100.0 * (pre['rss'] - warm['rss']) / warm['rss']:+.1f} %), at the peak "
        f"backlog {peak['rss'] / 1024:.1f} MiB, 10 s after the drain "
        f"{(after[0]['rss'] if after else end['rss']) / 1024:.1f} MiB, at the end {end['rss'] / 1024:.1f} MiB "
        f"({after_rss:+.1f} MiB since 10 s after the drain), max {max(r['rss'] for r in rows) / 1024:.1f} MiB"
    )
    print(
        f"soak   outbox file+wal before the outage {base_size / 1024:.0f} KiB ({base_waiting:.0f} batches waiting "
        f"at most), peak {max(r['size'] for r in rows) / 1024:.0f} KiB (backlog peak {peak['waiting']:.0f} "
        f"batches at {peak['t']:.0f} s), end {end['size'] / 1024:.0f} KiB (file {end['db'] / 1024:.0f} + wal "
        f"{end['wal'] / 1024:.0f}; {end['waiting']:.0f} waiting); from 10 s after the drain to the end "
        f"{after_growth / 1024:+.0f} KiB; dropped {end['dropped']:.0f} samples"
    )
    print(
        f"soak   broker back at {broker_back:.0f} s, publishing again after {reconnect:.0f} s (reconnect backoff), "
        f"backlog drained {drain:.0f} s after the broker came back; agent CPU "
        f"{cpu:.0f} % of one core; samples read {read_rate:.0f}/s; load average now {os.getloadavg()[0]:.2f}"
    )
    print(
        f"soak   target: RSS growth after warm-up {growth:+.1f} % (< {SOAK_RSS_GROWTH_LIMIT:.0f} %): "
        f"{'met' if growth < SOAK_RSS_GROWTH_LIMIT else 'NOT met'}"
    )
    print(
        f"soak   target: outbox flat: backlog back to its baseline {'yes' if back else 'NO'}, file not growing "
        f"after the drain {'yes' if flat else 'NO'}, file back to its pre-outage size (plus the "
        f"{kept_free / 2**20:.0f} MiB of free pages the outbox keeps) {'yes' if shrunk else 'NO'}"
    )
    print(
        f"soak   target: samples/s published {steady_rate:.0f} before the outage, {whole_rate:.0f} over the run "
        f"(configured {configured:.0f}; target {SOAK_TARGET_RATE:.0f}): "
        f"{'met' if steady_rate >= 0.98 * SOAK_TARGET_RATE else 'NOT met'}"
    )
    return {
        "rss_warm_mib": warm["rss"] / 1024,
        "rss_before_outage_mib": pre["rss"] / 1024,
        "rss_end_mib": end["rss"] / 1024,
        "rss_after_drain_growth_mib": after_rss,
        "rss_growth_percent": growth,
        "outbox_base_kib": base_size / 1024,
        "outbox_peak_kib": peak["size"] / 1024,
        "outbox_end_kib": end["size"] / 1024,
        "drain_s": drain,
        "reconnect_s": reconnect,
        "samples_per_s": steady_rate,
        "samples_per_s_run": whole_rate,
        "agent_cpu_percent": cpu,
    }


async def main(args: argparse.Namespace) -> None:
    parts = [args.only] if args.only else ["fsync", "drain", "ingest", "soak"]
    if "fsync" in parts:
        await bench_fsync()
    if "drain" in parts:
        await bench_drain(args.outage, args.rate, args.machines)
    if "ingest" in parts:
        await bench_ingest(args.messages, 50, args.rounds)
    if "soak" in parts:
        await bench_soak(
            args.minutes,
            args.soak_outage,
            args.soak_machines,
            args.soak_tags,
            args.soak_interval,
            args.soak_max_in_flight,
        )


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--only", choices=["fsync", "drain", "ingest", "soak"])
    parser.add_argument("--outage", type=float, default=20.0, help="drain: broker outage in seconds (default 20)")
    parser.add_argument("--rate", type=float, default=100.0, help="drain: live batches/s (default 100)")
    parser.add_argument("--machines", type=int, default=10, help="drain: machines feeding (default 10)")
    parser.add_argument("--messages", type=int, default=4000, help="ingest: messages of 50 points (default 4000)")
    parser.add_argument("--rounds", type=int, default=5, help="ingest: interleaved rounds of each way (default 5)")
    parser.add_argument("--minutes", type=float, default=2.0, help="soak: duration (default 2; 30 for the full soak)")
    parser.add_argument("--soak-outage", type=float, default=15.0, help="soak: broker outage in the middle, s")
    parser.add_argument("--soak-machines", type=int, default=10, help="soak: simulated machines (default 10)")
    parser.add_argument("--soak-tags", type=int, default=50, help="soak: tags per machine, at most 90 (default 50)")
    parser.add_argument("--soak-interval", default="100ms", help="soak: poll interval (default 100ms: 5,000 samples/s)")
    parser.add_argument(
        "--soak-max-in-flight", type=int, default=100, help="soak: the agent's outbox.max_in_flight (default 100)"
    )
    logging.basicConfig(level=logging.WARNING)
    for noisy in ("pymodbus", "asyncua"):  # the simulators' servers report client disconnects at length
        logging.getLogger(noisy).setLevel(logging.CRITICAL)
    os.environ.setdefault("PYTHONUNBUFFERED", "1")
    asyncio.run(main(parser.parse_args()))
