"""`edge-agent doctor` against a good setup and against each broken piece: the right row fails with the right fix."""

from __future__ import annotations

import asyncio
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml

from edge_agent.commands.demo import demo_config
from simulators import Simulation
from tests.helpers.servers import InfluxDB1, Mosquitto, free_port, unique_name


async def doctor(tmp_path: Path, config: dict[str, Any], env: dict[str, str] | None = None) -> tuple[int, str]:
    import os

    config_file = tmp_path / "plant.yaml"
    config_file.write_text(yaml.safe_dump(config))
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "edge_agent",
        "doctor",
        str(config_file),
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.STDOUT,
        env={**os.environ, **(env or {})},
    )
    output, _ = await asyncio.wait_for(process.communicate(), 90)
    assert process.returncode is not None
    text = output.decode()
    assert "Traceback" not in text, text
    return process.returncode, text


def row(output: str, starts: str) -> list[str]:
    """The row whose check name starts with ``starts``, and its fix line if any."""
    lines = output.splitlines()
    for index, line in enumerate(lines):
        if line[6:].startswith(starts):
            following = lines[index + 1] if index + 1 < len(lines) else ""
            return [line, following.strip()] if following.strip().startswith("fix:") else [line]
    raise AssertionError(f"no row for {starts!r} in:\n{output}")


@pytest.fixture
async def sim() -> Any:
    async with Simulation(seed=9) as simulation:
        yield simulation


def plant(sim: Simulation, broker_port: int, influx: InfluxDB1, database: str) -> dict[str, Any]:
    config = demo_config(sim).model_dump(mode="json", exclude_unset=True)
    config["mqtt"] = {"host": "127.0.0.1", "port": broker_port, "topic_prefix": unique_name("doc")}
    config["influxdb"] = {"version": 1, "url": influx.url, "database": database}
    return config


async def test_good_setup_passes_every_row(
    sim: Simulation, mosquitto: Mosquitto, influxdb1: InfluxDB1, tmp_path: Path
) -> None:
    database = unique_name("db")
    await asyncio.to_thread(influxdb1.create_database, database)
    code, output = await doctor(tmp_path, plant(sim, mosquitto.port, influxdb1, database))
    assert code == 0, output
    assert "FAIL" not in output
    assert row(output, "machine pump-1")[0].startswith("PASS")
    assert row(output, "MQTT broker")[0].startswith("PASS")
    assert "round-tripped" in row(output, "MQTT broker")[0]
    assert row(output, "InfluxDB 1.x")[0].startswith("PASS")
    assert sim.write_count == 0


async def test_each_broken_piece_fails_its_own_row_with_a_fix(
    sim: Simulation, influxdb1: InfluxDB1, tmp_path: Path
) -> None:
    config = plant(sim, free_port(), influxdb1, unique_name("missing_db"))
    config["machines"][1]["port"] = free_port()
    code, output = await doctor(tmp_path, config)
    assert code == 1
    assert row(output, "machine pump-1")[0].startswith("PASS")
    machine = row(output, "machine press-1")
    assert machine[0].startswith("FAIL")
    assert "fix: nothing listens at" in machine[1]
    broker = row(output, "MQTT broker")
    assert broker[0].startswith("FAIL")
    assert "check mqtt.host and mqtt.port" in broker[1]
    influx = row(output, "InfluxDB 1.x")
    assert influx[0].startswith("FAIL")
    assert "database" in influx[1]


async def test_bad_broker_password_is_named_and_never_shown(
    sim: Simulation, influxdb1: InfluxDB1, tmp_path: Path
) -> None:
    with Mosquitto(tmp_path / "broker", users={"agent": "right-password"}) as broker:
        database = unique_name("db")
        await asyncio.to_thread(influxdb1.create_database, database)
        config = plant(sim, broker.port, influxdb1, database)
        config["mqtt"].update(username="agent", password="${DOCTOR_TEST_PW}")
        code, output = await doctor(tmp_path, config, env={"DOCTOR_TEST_PW": "wrong-password-123"})
        assert code == 1
        line, fix = row(output, "MQTT broker")
        assert line.startswith("FAIL")
        assert "refused the login" in line
        assert "mqtt.username" in fix
        assert "wrong-password-123" not in output
        code, output = await doctor(tmp_path, config, env={"DOCTOR_TEST_PW": "right-password"})
        assert code == 0, output


async def test_unreadable_config_is_a_config_error_not_a_traceback(tmp_path: Path) -> None:
    config_file = tmp_path / "plant.yaml"
    config_file.write_text("machines: [\n")
    process = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "edge_agent", "doctor", str(config_file), stderr=asyncio.subprocess.PIPE
    )
    _, err = await asyncio.wait_for(process.communicate(), 60)
    assert process.returncode == 2
    assert b"not valid YAML" in err
    assert b"Traceback" not in err
