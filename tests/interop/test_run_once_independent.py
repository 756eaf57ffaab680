"""``edge-agent run --once`` from a YAML file, against the two servers we did not write.

What an operator does first with a new plant: write the machines into the config file and check
that every value comes back. One OPC UA machine (node-opcua, security None written out, node ids
by namespace URI) and one Modbus machine (libmodbus, word-swapped float, string, coil).
"""

from __future__ import annotations

import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml

from tests.interop.conftest import run_client
from tests.interop.libmodbus import LibmodbusServer
from tests.interop.node_opcua import NAMESPACE, NodeOpcUaServer


@pytest.fixture
def libmodbus(libmodbus_binary: Path, tmp_path: Path) -> Iterator[LibmodbusServer]:
    with LibmodbusServer(libmodbus_binary, tmp_path) as server:
        yield server
    assert server.final is not None
    assert server.final["writes"] == 0


async def test_run_once_reads_both_servers_from_a_config_file(
    node_opcua_server: NodeOpcUaServer, libmodbus: LibmodbusServer, tmp_path: Path
) -> None:
    config = {
        "machines": [
            {
                "type": "opcua",
                "id": "press-7",
                "endpoint": node_opcua_server.endpoint,
                "security": {"policy": "None", "mode": "None"},
                "interval": "5s",
                "connect_timeout": "20s",
                "tags": [
                    {"name": "temperature", "node": f"nsu={NAMESPACE};s=Temperature"},
                    {"name": "label", "node": f"nsu={NAMESPACE};s=Label"},
                    {"name": "count", "node": f"nsu={NAMESPACE};s=Count"},
                ],
            },
            {
                "type": "modbus",
                "id": "extruder-7",
                "host": "127.0.0.1",
                "port": libmodbus.port,
                "interval": "5s",
                "tags": [
                    {"name": "melt_temp", "address": 91, "type": "float32", "byte_order": "CDAB"},
                    {"name": "recipe", "address": 20, "type": "string", "length": 8},
                    {"name": "heater_on", "table": "coil", "address": 0},
                ],
            },
        ]
    }
    config_file = tmp_path / "plant.yaml"
    config_file.write_text(yaml.safe_dump(config, allow_unicode=True), encoding="utf-8")

    done = await run_client(sys.executable, "-m", "edge_agent", "run", str(config_file), "--once", timeout=90)

    assert done.returncode == 0, done.explain()
    assert "press-7: 3 tag(s), 3 good" in done.stdout, done.explain()
    assert "extruder-7: 3 tag(s), 3 good" in done.stdout, done.explain()
    lines = {line.split()[0]: line for line in done.stdout.splitlines() if line.startswith("  ")}
    assert "21.5" in lines["temperature"], lines
    assert "°C" in lines["temperature"], "the unit comes from the server's EngineeringUnits"
    assert "Halle Süd" in lines["label"], lines
    assert "65000" in lines["count"], lines
    assert "1234.56" in lines["melt_temp"], lines
    assert "EXTRUDER-7/B" in lines["recipe"], lines
    assert "true" in lines["heater_on"].lower(), lines
