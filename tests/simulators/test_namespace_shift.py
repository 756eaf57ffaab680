"""A server that comes back from a restart with its namespace at another index (recovery).

Real servers do this after a firmware update or when another namespace is loaded first; clients
that address nodes by namespace URI must look the index up again. The simulator models it with
empty placeholder namespaces registered before its own.
"""

from __future__ import annotations

import asyncio
import sys

import pytest
from asyncua import ua
from asyncua.ua.status_codes import StatusCodes

from simulators import Simulation
from simulators.errors import SimulatorError
from simulators.opcua_server import string_node
from simulators.register_map import NAMESPACE_URI
from tests.helpers.opcua_reads import Client, source_ns, status_value, value_of


async def test_restart_moves_the_namespace_and_the_old_index_names_nothing() -> None:
    async with Simulation(seed=1, update_interval=0.05, modbus_port=None) as sim:
        endpoint = sim.opcua.endpoint
        async with Client(endpoint, timeout=5) as client:
            before = await client.get_namespace_index(NAMESPACE_URI)
        assert before == sim.opcua.namespace_index == 2

        await sim.stop_server("opcua")
        sim.opcua.extra_namespaces = 3
        await sim.start_server("opcua")

        assert sim.opcua.endpoint == endpoint
        async with Client(endpoint, timeout=5) as client:
            namespaces = await client.get_namespace_array()
            after = namespaces.index(NAMESPACE_URI)
            assert after == sim.opcua.namespace_index == before + 3
            moved = await client.get_node(string_node("press-1.oil_temperature", after)).read_data_value()
            stale = await client.get_node(string_node("press-1.oil_temperature", before)).read_data_value(False)
        assert (source_ns(moved), value_of(moved)) in sim.served("opcua", "press-1", "oil_temperature")
        assert status_value(stale) == StatusCodes.BadNodeIdUnknown
        assert sim.write_count == 0


@pytest.mark.parametrize("count", [-1, 1001, 1.5, True])
def test_a_bad_count_is_refused_with_the_fix(count: object) -> None:
    with pytest.raises(SimulatorError, match=r"opcua_extra_namespaces must be a whole number .* Fix: e\.g\. 3"):
        Simulation(opcua_extra_namespaces=count, modbus_port=None)  # type: ignore[arg-type]


async def test_edge_sim_run_serves_the_namespace_at_the_index_asked_for() -> None:
    process = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "simulators.cli", "run", "--opcua-port", "0", "--modbus-port", "off",
        "--control-port", "off", "--opcua-extra-namespaces", "2",
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.DEVNULL,
    )  # fmt: skip
    assert process.stdout is not None
    try:
        async with asyncio.timeout(30):
            line = ""
            while not line.startswith("OPC UA"):
                line = (await process.stdout.readline()).decode()
                assert line, "edge-sim exited early"
        assert f"namespace {NAMESPACE_URI} at index 4" in line
        endpoint = line.split()[2]
        async with Client(endpoint, timeout=5) as client:
            assert await client.get_namespace_index(NAMESPACE_URI) == 4
            placeholder = ua.NodeId(ua.String("pump-1.flow"), ua.Int16(2))
            assert (
                status_value(await client.get_node(placeholder).read_data_value(False)) == StatusCodes.BadNodeIdUnknown
            )
    finally:
        process.terminate()
        async with asyncio.timeout(15):
            await process.wait()
