"""`edge-agent run --once`: an operator's first check that every machine answers."""

from __future__ import annotations

import asyncio
import sys
from pathlib import Path

import yaml

from edge_agent.commands.demo import demo_config
from simulators import Simulation
from tests.helpers.servers import free_port


async def run_once(config_file: Path) -> tuple[int, str]:
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
    output, _ = await asyncio.wait_for(process.communicate(), 60)
    assert process.returncode is not None
    return process.returncode, output.decode()


async def test_once_prints_every_value_and_exits_0(tmp_path: Path) -> None:
    async with Simulation(seed=5) as sim:
        config_file = tmp_path / "plant.yaml"
        config_file.write_text(yaml.safe_dump(demo_config(sim).model_dump(mode="json", exclude_unset=True)))
        code, output = await run_once(config_file)
        assert code == 0, output
        for machine in sim.machine_ids:
            assert f"{machine}: " in output
            for signal, _unit in sim.signals(machine):
                assert signal in output
        assert "BAD" not in output
        assert sim.write_count == 0


async def test_once_exits_1_and_names_the_machine_that_failed(tmp_path: Path) -> None:
    async with Simulation(seed=5) as sim:
        data = demo_config(sim).model_dump(mode="json", exclude_unset=True)
        data["machines"].append(dict(data["machines"][1], id="ghost-1", port=free_port()))
        config_file = tmp_path / "plant.yaml"
        config_file.write_text(yaml.safe_dump(data))
        code, output = await run_once(config_file)
    assert code == 1
    assert "ghost-1: FAILED" in output
    assert "pump-1: " in output
    assert "Traceback" not in output
