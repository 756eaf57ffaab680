"""`edge-agent discover`: map a device read-only, against a real simulator, through the CLI.

Each command runs as a subprocess (``asyncio.create_subprocess_exec``) so the simulator in this
process keeps serving while the command talks to it.
"""

from __future__ import annotations

import argparse
import asyncio
import re
import struct
import sys
from pathlib import Path

import pytest
import yaml

from edge_agent.commands.cli import build_parser
from edge_agent.runtime.loader import parse_config
from simulators import Simulation
from tests.helpers.servers import free_port

NAMESPACE = "urn:edge-agent:simulator"


def _command() -> list[str]:
    """``-m edge_agent discover`` once the CLI registers it, else the module's own entry point."""
    for action in build_parser()._actions:
        if isinstance(action, argparse._SubParsersAction) and "discover" in action.choices:
            return ["-m", "edge_agent", "discover"]
    return ["-m", "edge_agent.commands.discover"]


async def discover(*argv: str) -> tuple[int, str, str]:
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        *_command(),
        *argv,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    out, err = await asyncio.wait_for(process.communicate(), 30)
    assert process.returncode is not None
    return process.returncode, out.decode(), err.decode()


def opcua_rows(table: str) -> dict[str, list[str]]:
    """Table rows by node id: [node, browse path, type, unit, value]."""
    return {
        line.split()[0]: re.split(r"\s{2,}", line.strip()) for line in table.splitlines() if line.startswith("nsu=")
    }


def modbus_row(table: str, address: int) -> list[str]:
    """The cells of one address row: addr, hex, int16, uint16, f32 ABCD, CDAB, BADC, DCBA[, error]."""
    for line in table.splitlines():
        cells = line.split(None, 8)
        if cells and cells[0] == str(address):
            return cells
    raise AssertionError(f"no row for address {address} in:\n{table}")


def float32_of(text: str) -> bytes:
    return struct.pack(">f", float(text))


def served_float32(sim: Simulation, machine: str, signal: str) -> set[bytes]:
    return {struct.pack(">f", value) for _ts, value in sim.served("modbus", machine, signal)}


async def test_opcua_browse_lists_every_signal_and_writes_a_config_that_runs(tmp_path: Path) -> None:
    async with Simulation(seed=1, opcua_port=0, modbus_port=None) as sim:
        async with asyncio.timeout(5):
            await sim.wait_updates(2)
        section_file = tmp_path / "pump.yaml"
        code, out, err = await discover(
            sim.opcua.endpoint,
            "--security",
            "none",  # the simulator's default server offers only None
            "--filter",
            "*pump-1*",
            "--id",
            "pump-1",
            "--out",
            str(section_file),
        )
        assert code == 0, err
        rows = opcua_rows(out)
        for signal, unit in sim.signals("pump-1"):
            node = f"nsu={NAMESPACE};s=pump-1.{signal}"
            assert node in rows, out
            _node, path, data_type, shown_unit, value = rows[node]
            assert path.endswith(f"pump-1/{signal}")
            assert data_type == "Double"
            assert shown_unit == unit
            served = {f"{v:.6g}" for _ts, v in sim.served("opcua", "pump-1", signal)}
            assert value in served, (signal, value)
        assert not any("press-1" in node for node in rows), "the filter keeps pump-1 only"

        section = yaml.safe_load(section_file.read_text())
        assert section["type"] == "opcua"
        assert section["endpoint"] == sim.opcua.endpoint
        assert section["security"] == "none"
        assert "# Security: none" in section_file.read_text()
        tags = {tag["name"]: tag for tag in section["tags"]}
        for signal, unit in sim.signals("pump-1"):
            assert tags[signal] == {"name": signal, "node": f"nsu={NAMESPACE};s=pump-1.{signal}", "unit": unit}
        config_text = yaml.safe_dump({"machines": [section]}, allow_unicode=True)
        config = parse_config(config_text)
        assert [m.id for m in config.machines] == ["pump-1"]

        config_file = tmp_path / "agent.yaml"
        config_file.write_text(config_text, encoding="utf-8")
        process = await asyncio.create_subprocess_exec(
            sys.executable,
            "-m",
            "edge_agent",
            "run",
            str(config_file),
            "--once",
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.STDOUT,
        )
        output = (await asyncio.wait_for(process.communicate(), 30))[0].decode()
        assert process.returncode == 0, output
        assert f"pump-1: {len(tags)} tag(s), {len(tags)} good" in output
        assert sim.write_count == 0


async def test_opcua_section_goes_to_stdout_and_the_table_to_stderr() -> None:
    async with Simulation(seed=2, opcua_port=0, modbus_port=None) as sim:
        code, out, err = await discover(sim.opcua.endpoint, "--depth", "3", "--security", "none")
        assert code == 0, err
        config = parse_config(yaml.safe_dump({"machines": [yaml.safe_load(out)]}, allow_unicode=True))
        names = {tag.name for tag in config.machines[0].tags}
        # Both machines have e.g. motor_current: the clash is resolved with the parent's name.
        assert {"pump-1.motor_current", "press-1.motor_current"} <= names
        assert f"nsu={NAMESPACE};s=press-1.hydraulic_pressure" in err
        shallow = await discover(sim.opcua.endpoint, "--depth", "2", "--security", "none")
        assert shallow[0] == 0
        assert "no variables found" in shallow[2]
        assert sim.write_count == 0


@pytest.mark.parametrize("byte_order", ["ABCD", "CDAB"])
async def test_modbus_dump_shows_the_float_in_its_byte_order_column(byte_order: str) -> None:
    async with Simulation(seed=3, opcua_port=None, modbus_port=0, modbus_byte_order=byte_order) as sim:
        async with asyncio.timeout(5):
            await sim.wait_updates(2)
        registers = 2 * len(sim.signals("pump-1"))
        code, out, err = await discover(
            f"modbus://127.0.0.1:{sim.modbus.port}",
            "--unit",
            str(sim.modbus.unit_id("pump-1")),
            "--table",
            "input",
            "--range",
            f"0-{registers + 2}",
        )
        assert code == 0, err
        column = 4 + ["ABCD", "CDAB", "BADC", "DCBA"].index(byte_order)
        assert float32_of(modbus_row(out, 0)[column]) in served_float32(sim, "pump-1", "flow")
        temperature = sim.signals("pump-1")[3][0]
        assert float32_of(modbus_row(out, 6)[column]) in served_float32(sim, "pump-1", temperature)
        # Past the pump's input registers the device answers exception 2: marked per address.
        for address in range(registers, registers + 3):
            assert modbus_row(out, address)[-1] == "Modbus exception 2: illegal data address"
        assert "-" not in modbus_row(out, registers - 2)[1:4]
        assert sim.write_count == 0


async def test_modbus_holding_registers_and_an_unknown_unit() -> None:
    async with Simulation(seed=4, opcua_port=None, modbus_port=0) as sim:
        url = f"modbus://127.0.0.1:{sim.modbus.port}"
        (code, out, err), (bad_code, bad_out, bad_err) = await asyncio.gather(
            discover(url, "--unit", str(sim.modbus.unit_id("press-1")), "--range", "0-199"),
            discover(url, "--unit", "9", "--range", "0-3"),
        )
        assert code == 0, err
        state = modbus_row(out, 102)
        assert state[3] in {"0", "1", "2", "3"}  # the state code, uint16
        assert modbus_row(out, 103)[-1] == "Modbus exception 2: illegal data address"
        assert bad_code == 0, bad_err
        assert modbus_row(bad_out, 0)[-1] == "Modbus exception 11: gateway target device failed to respond"
        assert sim.write_count == 0


async def test_bad_input_is_one_line_with_the_fix() -> None:
    dead = free_port()
    cases = [
        (["opc.tcp//127.0.0.1:4840"], 2, "opc.tcp://"),
        (["http://127.0.0.1:4840"], 2, "opc.tcp://"),
        (["modbus://127.0.0.1:502", "--range", "100-50"], 2, "reversed"),
        (["modbus://127.0.0.1:502", "--range", "65500-65600"], 2, "65535"),
        (["modbus://127.0.0.1:502", "--range", "ten"], 2, "FIRST-LAST"),
        (["modbus://127.0.0.1:99999"], 2, "Fix"),
        (["opc.tcp://127.0.0.1:4840", "--range", "0-9"], 2, "modbus://"),
        ([f"modbus://127.0.0.1:{dead}", "--timeout", "2"], 1, "cannot connect"),
        ([f"opc.tcp://127.0.0.1:{dead}", "--timeout", "2"], 1, "cannot connect"),
    ]
    results = await asyncio.gather(*(discover(*argv) for argv, _code, _text in cases))
    for (argv, code, text), (got, out, err) in zip(cases, results, strict=True):
        assert got == code, (argv, out, err)
        lines = err.strip().splitlines()
        assert len(lines) == 1, (argv, err)
        assert lines[0].startswith("error: "), (argv, err)
        assert "Fix" in lines[0], (argv, err)
        assert text in lines[0], (argv, err)
        assert "Traceback" not in out + err
