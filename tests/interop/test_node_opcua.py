"""node-opcua (a client we did not write) browses and reads the simulator's OPC UA server.

``browse_read.mjs`` connects with security None, browses Objects/Machines, and reads Value and
DataType of every variable of one machine; it prints JSON with each SourceTimestamp in Unix ns.
Every value must be one the simulator served, at exactly the SourceTimestamp it was served with.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from simulators import Simulation
from tests.interop.conftest import run_client

NAMESPACE = "urn:edge-agent:simulator"
MACHINES = ["pump-1", "press-1", "cnc-1"]
STATUS_NODES = {"state": "i=12", "state_code": "i=5", "parts_count": "i=7"}  # String, UInt16, UInt32
DOUBLE = "i=11"
STATE_CODES = {"off": 0, "idle": 1, "running": 2, "setup": 3}


@pytest.fixture
async def sim() -> AsyncIterator[Simulation]:
    async with Simulation(seed=1, machines=MACHINES, update_interval=0.1, opcua_port=0, modbus_port=None) as running:
        async with asyncio.timeout(5):
            await running.wait_updates(2)
        yield running


def latest_ns(sim: Simulation, machine: str) -> int:
    return sim.served("opcua", machine, sim.signals(machine)[0][0])[-1][0]


async def browse_read(node_opcua_script: tuple[str, Path, Path], sim: Simulation, machine: str) -> dict[str, Any]:
    node, script, pki = node_opcua_script
    done = await run_client(node, str(script), sim.opcua.endpoint, machine, str(pki), timeout=30)
    assert done.returncode == 0, done.explain()
    try:
        result: dict[str, Any] = json.loads(done.stdout)
    except json.JSONDecodeError:
        pytest.fail(f"browse_read.mjs printed no JSON\n{done.explain()}")
    return result


def data_type_id(text: str | None) -> str | None:
    """node-opcua prints namespace-0 ids as ``ns=0;i=11``; compare as ``i=11``."""
    return None if text is None else text.removeprefix("ns=0;")


@pytest.mark.parametrize("machine", ["pump-1", "cnc-1"])
async def test_browse_and_read_match_served(
    node_opcua_script: tuple[str, Path, Path], sim: Simulation, machine: str
) -> None:
    since = latest_ns(sim, machine)
    result = await browse_read(node_opcua_script, sim, machine)

    # the namespace index is looked up, never assumed
    assert NAMESPACE in result["namespaceArray"], result["namespaceArray"]
    idx = result["namespaceArray"].index(NAMESPACE)

    # the browse finds every machine, and under each every signal (and status) node
    browsed = {m["browseName"]: m for m in result["machines"]}
    assert sorted(browsed) == sorted(sim.machine_ids), result["machines"]
    for machine_id in sim.machine_ids:
        assert browsed[machine_id]["nodeId"] == f"ns={idx};s={machine_id}"
        nodes = {v["nodeId"] for v in browsed[machine_id]["variables"]}
        names = [name for name, _ in sim.signals(machine_id)] + list(STATUS_NODES)
        expected = {f"ns={idx};s={machine_id}.{name}" for name in names}
        assert expected <= nodes, f"{machine_id}: missing {sorted(expected - nodes)}; browsed {sorted(nodes)}"

    # every variable read equals a served value at exactly its served SourceTimestamp
    reads = {r["browseName"]: r for r in result["reads"]}
    signals = [name for name, _ in sim.signals(machine)]
    assert set(signals) | set(STATUS_NODES) <= set(reads), sorted(reads)
    for name in [*signals, "state_code", "parts_count"]:
        read = reads[name]
        assert read["statusCode"] == "Good", read
        expected_type = DOUBLE if name in signals else STATUS_NODES[name]
        assert data_type_id(read["dataType"]) == expected_type, read
        source_ns = int(read["sourceTimestampNs"])
        assert read["serverTimestampNs"] == read["sourceTimestampNs"], f"README: both set to the update time: {read}"
        history = dict(sim.served("opcua", machine, name))
        assert source_ns in history, (
            f"{machine}.{name}: SourceTimestamp {read['sourceTimestamp']} ({source_ns}) was never served;"
            f" last served {sorted(history)[-3:]}"
        )
        assert source_ns >= since, f"{machine}.{name}: read a value older than the call ({source_ns} < {since})"
        assert read["value"] == history[source_ns], (
            f"{machine}.{name}: read {read['value']!r}, served {history[source_ns]!r} at {source_ns}"
        )

    # the state string agrees with the state code served at its timestamp
    state = reads["state"]
    assert state["statusCode"] == "Good", state
    assert data_type_id(state["dataType"]) == STATUS_NODES["state"], state
    codes = dict(sim.served("opcua", machine, "state_code"))
    assert int(state["sourceTimestampNs"]) in codes, state
    assert STATE_CODES[state["value"]] == codes[int(state["sourceTimestampNs"])], state
