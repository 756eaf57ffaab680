"""Chaos on the single-box path: simulators → ``edge-agent run`` with ``outbox.deliver_to: influxdb`` → InfluxDB 1.x.

No broker: the agent writes through its outbox straight into InfluxDB. InfluxDB is stopped for a
shortened outage (6 s instead of minutes, to keep the folder quick on 2 cores), the agent is
killed with SIGKILL while it holds the backlog only in its file, restarted, and InfluxDB comes
back. Then, exactly: samples appended = points in InfluxDB + samples counted as dropped (none).
"""

from __future__ import annotations

import asyncio
import signal
import sys
from pathlib import Path

import pytest
import yaml

from edge_agent.commands.demo import demo_config
from edge_agent.delivery.outbox import read_counters
from simulators import Simulation
from tests.helpers.servers import InfluxDB1, unique_name
from tests.helpers.telemetry import telemetry_points
from tests.helpers.waiting import wait_until

pytestmark = [pytest.mark.chaos, pytest.mark.timeout(180)]


async def spawn(config: Path, log: Path) -> asyncio.subprocess.Process:
    with log.open("wb") as handle:
        return await asyncio.create_subprocess_exec(
            sys.executable, "-m", "edge_agent", "run", str(config), stdout=handle, stderr=asyncio.subprocess.STDOUT
        )


async def appended_at_least(outbox: Path, count: int, within: float, logs: Path) -> None:

    async def appended() -> bool:
        return (await asyncio.to_thread(read_counters, outbox))["appended_samples"] >= count

    def agent_logs() -> str:
        return "\n".join(p.read_text() for p in sorted(logs.glob("run-*.log")))

    await wait_until(appended, within, f"the agent to store {count} samples", interval=0.2, detail=agent_logs)


async def test_influxdb_outage_and_kill_9_on_the_direct_path(fresh_influxdb1: InfluxDB1, tmp_path: Path) -> None:
    database = unique_name("db")
    await asyncio.to_thread(fresh_influxdb1.create_database, database)
    outbox = tmp_path / "outbox.sqlite"
    processes: list[asyncio.subprocess.Process] = []
    async with Simulation(seed=8, update_interval=0.1, opcua_port=None, modbus_port=0) as sim:
        config = demo_config(sim, use_opcua=False).model_dump(mode="json", exclude_unset=True)
        for machine in config["machines"]:
            machine["interval"] = "200ms"
        config["influxdb"] = {"version": 1, "url": fresh_influxdb1.url, "database": database, "timeout": "2s"}
        config["outbox"] = {"path": str(outbox), "deliver_to": "influxdb"}
        config_file = tmp_path / "agent.yaml"
        config_file.write_text(yaml.safe_dump(config))

        def stored() -> int:
            return telemetry_points(fresh_influxdb1, database)

        try:
            processes.append(await spawn(config_file, tmp_path / "run-1.log"))
            await appended_at_least(outbox, 100, 30, tmp_path)
            await asyncio.to_thread(fresh_influxdb1.stop)
            before = (await asyncio.to_thread(read_counters, outbox))["appended_samples"]
            await appended_at_least(outbox, before + 100, 15, tmp_path)
            assert (await asyncio.to_thread(read_counters, outbox))["waiting"] > 10, "a backlog on disk"
            processes[-1].send_signal(signal.SIGKILL)
            await processes[-1].wait()
            processes.append(await spawn(config_file, tmp_path / "run-2.log"))
            before = (await asyncio.to_thread(read_counters, outbox))["appended_samples"]
            await appended_at_least(outbox, before + 50, 15, tmp_path)
            await asyncio.to_thread(fresh_influxdb1.start)
            before = (await asyncio.to_thread(read_counters, outbox))["appended_samples"]
            await appended_at_least(outbox, before + 50, 30, tmp_path)
            await sim.stop_server("modbus")  # no new batches: let the outbox drain

            async def drained() -> bool:
                counters = await asyncio.to_thread(read_counters, outbox)
                points = await asyncio.to_thread(stored)
                return counters["waiting"] == 0 and points + counters["dropped_samples"] == counters["appended_samples"]

            await wait_until(drained, 60, "the outbox to drain into InfluxDB", interval=0.3,
                             detail=lambda: (read_counters(outbox), stored()))  # fmt: skip
            processes[-1].send_signal(signal.SIGINT)
            async with asyncio.timeout(10):
                assert await processes[-1].wait() == 0
        finally:
            for process in processes:
                if process.returncode is None:
                    process.kill()
                    await process.wait()
        assert sim.write_count == 0
    final = await asyncio.to_thread(read_counters, outbox)
    assert final["dropped_samples"] == 0
    assert final["waiting"] == 0
    assert await asyncio.to_thread(stored) == final["appended_samples"]
