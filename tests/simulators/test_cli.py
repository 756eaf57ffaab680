"""``edge-sim``: describe prints the map; run serves until SIGTERM and exits cleanly."""

from __future__ import annotations

import asyncio
import json
import signal
import sys
from pathlib import Path

import pytest

from simulators import Simulation
from simulators.cli import format_readings, main


def test_describe_prints_node_ids_and_registers(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["describe"]) == 0
    out = capsys.readouterr().out
    assert "nsu=urn:edge-agent:simulator;s=pump-1.flow" in out
    assert "Modbus unit id 2" in out
    assert "holding 102" in out


def test_describe_json_is_data(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["describe", "--json", "--machines", "press-3"]) == 0
    data = json.loads(capsys.readouterr().out)
    assert data["machines"][0]["machine_id"] == "press-3"
    assert data["machines"][0]["signals"][0]["modbus_input_address"] == 0


def test_bad_machine_is_a_clear_error(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["describe", "--machines", "robot-1"]) == 2
    assert "unknown kind 'robot'" in capsys.readouterr().err


SCENARIO = Path(__file__).parents[2] / "simulators" / "scenarios" / "demo_plant.yaml"


@pytest.mark.parametrize(
    ("extra", "units"),
    [
        (["--opcua-port", "off", "--seed", "3"], "unit ids: pump-1=1, press-1=2"),
        (["--opcua-port", "off", "--scenario", str(SCENARIO)], "press-1=2, cnc-1=3, conveyor-1=4, compressor-1=5"),
        (
            ["--opcua-port", "0", "--opcua-security", "Basic256Sha256", "--opcua-user", "operator:s3cret"],
            "unit ids: pump-1=1, press-1=2",
        ),
    ],
)
async def test_run_prints_endpoints_and_stops_on_sigterm(extra: list[str], units: str, tmp_path: Path) -> None:
    truth = tmp_path / "truth.json"
    cert = tmp_path / "server.der"
    command = [
        "-m",
        "simulators.cli",
        "run",
        "--modbus-port",
        "0",
        "--control-port",
        "0",
        "--truth",
        str(truth),
        *extra,
    ]
    command += ["--opcua-cert-out", str(cert)]
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        *command,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.DEVNULL,
    )
    assert process.stdout is not None
    lines: list[str] = []
    try:
        async with asyncio.timeout(20):
            while not lines or "running" not in lines[-1]:
                lines.append((await process.stdout.readline()).decode())
                assert lines[-1], "edge-sim exited early"
        assert any(line.startswith("OPC UA  opc.tcp://127.0.0.1:") for line in lines) != ("off" in extra)
        assert units in lines[-2]
        if "--opcua-security" in extra:
            assert "security Basic256Sha256, users: operator)" in lines[0]
            assert "s3cret" not in "".join(lines)  # never print a password
            assert cert.read_bytes()[:1] == b"\x30"  # a DER certificate (ASN.1 SEQUENCE)
        else:
            assert not cert.exists()
        process.send_signal(signal.SIGTERM)
        async with asyncio.timeout(20):
            rest = (await process.stdout.read()).decode()
            assert await process.wait() == 0
        assert "client write requests seen: 0" in rest
        faults = json.loads(truth.read_text())
        assert len(faults) == (5 if "--scenario" in extra else 0)
        assert all(f["start"] is None for f in faults)  # 60x: the first fault is 30 s away
    finally:
        if process.returncode is None:
            process.kill()
            await process.wait()


def test_describe_a_scenario_and_list_faults(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["describe", "--scenario", str(SCENARIO)]) == 0
    assert "compressor-1 (compressor) - Modbus unit id 5" in capsys.readouterr().out
    assert main(["faults"]) == 0
    out = capsys.readouterr().out
    assert "bearing_wear" in out
    assert "pump: vibration_rms/motor_current/motor_temperature" in out


async def test_show_lines_name_state_values_units_and_faults() -> None:
    async with Simulation(machines=["pump-1"], opcua_port=None, modbus_port=None) as sim:
        sim.inject_fault("pump-1", "imbalance")
        async with asyncio.timeout(5):
            await sim.wait_updates(1)
        (line,) = format_readings(sim)
    assert line.startswith("pump-1        running parts 0")
    assert " m3/h " in line
    assert line.endswith("[fault: imbalance]")


def test_check_reports_every_file(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    bad = tmp_path / "bad.yaml"
    bad.write_text("faults:\n  - {machine: pump-1, fault: melting}\n")
    assert main(["check", str(SCENARIO)]) == 0
    assert "ok: " in capsys.readouterr().out
    assert main(["check", str(SCENARIO), str(bad)]) == 2
    captured = capsys.readouterr()
    assert "5 machine(s), 5 fault(s)" in captured.out
    assert "2 protocol fault(s)" in captured.out
    assert "line 2: faults[0].fault: unknown fault 'melting'" in captured.err
