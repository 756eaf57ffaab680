"""Without a broker (``outbox.deliver_to: influxdb``) alert events and scores go straight to InfluxDB.

The whole agent runs against a simulated pump and a real InfluxDB 1.x; an injected fault must
appear as an ``alerts`` point next to the ``anomaly_score`` points of every scored window, the
same points the ingest bridge writes from MQTT (edge_agent/alerts/events.py).
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from edge_agent.commands.demo import DEMO_ALERTS
from edge_agent.runtime.agent import Agent
from edge_agent.runtime.config import AgentConfig
from simulators import Simulation
from tests.helpers.servers import InfluxDB1, unique_name
from tests.helpers.waiting import wait_until


@pytest.fixture
async def sim() -> AsyncIterator[Simulation]:
    async with Simulation(seed=23, update_interval=0.05, machines=["pump-1"], opcua_port=None) as simulation:
        yield simulation


def rows(influxdb1: InfluxDB1, db: str, query: str) -> list[dict[str, Any]]:
    return influxdb1.query(query, db=db)


async def test_alerts_and_scores_are_written_to_influxdb(sim: Simulation, influxdb1: InfluxDB1, tmp_path: Path) -> None:
    db = unique_name("direct")
    await asyncio.to_thread(influxdb1.create_database, db)
    tags = [
        {"name": name, "table": "input", "address": 2 * i, "type": "float32", "unit": unit}
        for i, (name, unit) in enumerate(sim.signals("pump-1"))
    ]
    tags.append({"name": "state_code", "table": "holding", "address": 102, "type": "uint16"})
    config = AgentConfig.model_validate(
        {
            "site": {"name": "plant"},
            "machines": [
                {
                    "type": "modbus",
                    "id": "pump-1",
                    "host": "127.0.0.1",
                    "port": sim.modbus.port,
                    "unit_id": sim.modbus.unit_id("pump-1"),
                    "interval": "100ms",
                    "tags": tags,
                }
            ],
            "alerts": {
                **DEMO_ALERTS,
                "window": "1s",
                "hop": "0.5s",
                "learn_after": "20s",
                "data_dir": str(tmp_path / "models"),
            },
            "influxdb": {"version": 1, "url": influxdb1.url, "database": db},
            "outbox": {"path": str(tmp_path / "outbox.sqlite"), "deliver_to": "influxdb"},
        }
    )
    agent = Agent(config)
    assert agent.publisher is None
    engine = agent.alerts
    assert engine is not None
    stop = asyncio.Event()
    task = asyncio.create_task(agent.run(stop), name="agent-under-test")
    try:
        await wait_until(lambda: engine.stats("pump-1").learned, 60, "learned", detail=lambda: engine.stats("pump-1"))
        sim.inject_fault("pump-1", "imbalance", severity=1.0, progression="sudden")
        await wait_until(lambda: bool(agent.alert_board.active()), 30, "the alert raised")
        raised = agent.alert_board.active()[0]

        def stored_alerts() -> list[dict[str, Any]]:
            return rows(influxdb1, db, "SELECT * FROM alerts")

        await wait_until(lambda: len(stored_alerts()) >= 1, 30, "the alert point in InfluxDB", interval=0.5)
        point = stored_alerts()[0]
        assert (point["event"], point["machine"], point["site"]) == ("raised", "pump-1", "plant")
        assert point["alert_id"] == raised["alert_id"]
        assert point["model_version"] == engine.stats("pump-1").model_version
        assert point["signals"], "the explanation is stored for the annotation"
    finally:
        stop.set()
        await asyncio.wait_for(task, 10)
    scored = engine.stats("pump-1").scored
    scores = rows(influxdb1, db, "SELECT * FROM anomaly_score")
    assert 0 < len(scores) <= scored, "one point per scored window (the last ones may wait in the outbox)"
    assert len(scores) >= scored - 5
    assert {s["detector"] for s in scores} == {"pca"}
    assert max(s["level"] for s in scores) >= 1, "the fault shows in the scores"
    assert all((s["score"] >= s["threshold"]) == (s["level"] >= 1) for s in scores)
    assert sim.write_count == 0
