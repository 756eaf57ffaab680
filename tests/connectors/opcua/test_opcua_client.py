"""The OPC UA connector against the simulator's real OPC UA server."""

from __future__ import annotations

import time
from collections.abc import AsyncIterator

import pytest
import pytest_asyncio

from connectors.base import Connector
from connectors.opcua.client import OpcUaConnector
from connectors.opcua.config import OpcUaMachine
from edge_agent.core.connection import ConnectionState
from edge_agent.core.errors import ConnectError
from edge_agent.core.samples import Quality
from simulators import Simulation
from tests.helpers.servers import free_port
from tests.helpers.simconfig import NAMESPACE, opcua_machine

# These tests only read, so they share one simulator (starting its OPC UA server takes a second).
pytestmark = pytest.mark.asyncio(loop_scope="module")


def state_now(connector: Connector) -> ConnectionState:
    """The connector's state read afresh: mypy keeps an earlier ``is`` narrowing across the awaits that change it."""
    return connector.state


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def opcua_sim() -> AsyncIterator[Simulation]:
    async with Simulation(seed=1, update_interval=0.1, modbus_port=None) as simulation:
        yield simulation
    assert simulation.write_count == 0, "a connector sent a write request to the simulator"


async def test_values_and_source_timestamps_are_what_was_served(opcua_sim: Simulation) -> None:
    sim = opcua_sim
    machine = sim.machine_ids[0]
    connector = OpcUaConnector(opcua_machine(sim, machine))
    await connector.connect()
    try:
        for _ in range(3):
            await sim.wait_updates(1)
            batch = await connector.read()
            assert batch.machine == machine
            assert [s.tag for s in batch.samples] == [name for name, _ in sim.signals(machine)]
            for sample in batch.samples:
                assert sample.quality is Quality.GOOD, sample
                served = dict(sim.served("opcua", machine, sample.tag))
                assert sample.timestamp_ns in served, f"{sample.tag}: timestamp {sample.timestamp_ns} never served"
                assert sample.value == served[sample.timestamp_ns]
                assert isinstance(sample.value, float)
        assert connector.reads_per_cycle == 1
    finally:
        await connector.close()
    assert sim.write_count == 0


async def test_nonexistent_node_is_bad_and_the_rest_good(
    opcua_sim: Simulation, caplog: pytest.LogCaptureFixture
) -> None:
    sim = opcua_sim
    machine = sim.machine_ids[0]
    extra = [
        {"name": "missing", "node": f"nsu={NAMESPACE};s={machine}.no_such_signal"},
        {"name": "wrong_namespace", "node": "nsu=urn:not-there;s=x"},
        {"name": "state", "node": f"nsu={NAMESPACE};s={machine}.state"},
        {"name": "parts", "node": f"nsu={NAMESPACE};s={machine}.parts_count"},
        {"name": "server_state", "node": "i=2259"},
    ]
    connector = OpcUaConnector(opcua_machine(sim, machine, extra_tags=extra))
    await connector.connect()
    await connector.connect()  # a reconnect resolves again but does not repeat the warning
    try:
        batch = await connector.read()
    finally:
        await connector.close()
    warnings = [r for r in caplog.records if r.name.startswith("connectors") and "urn:not-there" in r.getMessage()]
    assert len(warnings) == 1
    samples = {s.tag: s for s in batch.samples}
    assert samples["missing"].quality is Quality.BAD
    assert samples["missing"].value is None
    assert samples["missing"].reason is not None
    assert samples["missing"].reason.startswith("BadNodeIdUnknown")
    assert samples["wrong_namespace"].quality is Quality.BAD
    assert "urn:not-there" in (samples["wrong_namespace"].reason or "")
    assert samples["state"].value == "running"
    assert isinstance(samples["parts"].value, int)
    assert samples["server_state"].value == 0  # ServerState.Running
    good = [s for s in batch.samples if s.tag not in {"missing", "wrong_namespace"}]
    assert all(s.quality is Quality.GOOD for s in good)
    assert batch.good_count == len(batch.samples) - 2


async def test_ns_index_ids_are_used_as_given(opcua_sim: Simulation) -> None:
    sim = opcua_sim
    machine = sim.machine_ids[0]
    probe = OpcUaConnector(opcua_machine(sim, machine))
    await probe.connect()
    index = probe.namespaces.index(NAMESPACE)
    await probe.close()
    signal = sim.signals(machine)[0][0]
    config = opcua_machine(sim, machine, extra_tags=[{"name": "by_index", "node": f"ns={index};s={machine}.{signal}"}])
    connector = OpcUaConnector(config)
    await connector.connect()
    try:
        batch = await connector.read()
    finally:
        await connector.close()
    samples = {s.tag: s for s in batch.samples}
    assert samples["by_index"].quality is Quality.GOOD
    assert samples["by_index"].value == samples[signal].value


async def test_server_down_at_connect_raises_connect_error() -> None:
    port = free_port()
    config = OpcUaMachine.model_validate(
        {
            "type": "opcua",
            "id": "m-down",
            "endpoint": f"opc.tcp://127.0.0.1:{port}/nothing/",
            "security": {"policy": "None", "mode": "None"},
            "interval": "1s",
            "tags": [{"name": "a", "node": "i=2259"}],
        }
    )
    connector = OpcUaConnector(config)
    started = time.monotonic()
    with pytest.raises(ConnectError) as exc:
        await connector.connect()
    assert time.monotonic() - started < 5
    assert "m-down" in str(exc.value)
    assert connector.state is ConnectionState.DOWN
    await connector.close()
    await connector.close()
    assert state_now(connector) is ConnectionState.CLOSED


async def test_units_come_from_the_servers_engineering_units(opcua_sim: Simulation) -> None:
    machine = opcua_sim.machine_ids[0]
    namespace = opcua_sim.opcua.namespace_uri
    signals = opcua_sim.signals(machine)
    tags = [{"name": name, "node": f"nsu={namespace};s={machine}.{name}"} for name, _ in signals]
    tags[0]["unit"] = "my unit"  # a configured unit wins
    tags.append({"name": "state", "node": f"nsu={namespace};s={machine}.state"})  # no EngineeringUnits
    config = OpcUaMachine.model_validate(
        {
            "type": "opcua",
            "id": machine,
            "endpoint": opcua_sim.opcua.endpoint,
            "security": {"policy": "None", "mode": "None"},
            "tags": tags,
        }
    )
    connector = OpcUaConnector(config)
    await connector.connect()
    try:
        units = {s.tag: s.unit for s in (await connector.read()).samples}
    finally:
        await connector.close()
    expected = dict(signals) | {signals[0][0]: "my unit", "state": None}
    assert units == expected
    off = OpcUaConnector(config.model_copy(update={"units_from_server": False}))
    await off.connect()
    try:
        assert {s.unit for s in (await off.read()).samples} == {"my unit", None}
    finally:
        await off.close()
