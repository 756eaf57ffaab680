"""`edge-sim inject`: faults injected into a running `edge-sim run` from another process.

A real `edge-sim run` subprocess on free ports; `edge-sim inject` run as its own process, as a
student would from a second terminal; the effect read back over Modbus TCP with pymodbus.
"""

from __future__ import annotations

import asyncio
import contextlib
import re
import signal
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from pymodbus.client import ModbusTcpClient
from pymodbus.client.mixin import ModbusClientMixin

from simulators import Simulation
from simulators.cli import main
from simulators.control import ControlServer, request
from simulators.errors import SimulatorError
from tests.helpers.servers import free_port
from tests.helpers.waiting import wait_until_sync

EDGE_SIM = [sys.executable, "-m", "simulators.cli"]
PUMP_SIGNALS = ["flow", "outlet_pressure", "motor_current", "motor_temperature", "vibration_rms"]
HEALTHY_VIBRATION = 3.0  # mm/s: the healthy pump runs at about 1.2
FAULTY_VIBRATION = 4.0  # mm/s: bearing wear and imbalance at full severity give 7-10


@dataclass
class RunningSim:
    process: subprocess.Popen[bytes]
    output: Path
    control_port: int
    modbus_port: int

    def inject(self, *args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [*EDGE_SIM, "inject", *args, "--control", f"127.0.0.1:{self.control_port}"],
            capture_output=True,
            text=True,
            timeout=30,
            check=False,
        )


@pytest.fixture(scope="module")
def running(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningSim]:
    output = tmp_path_factory.mktemp("edge-sim") / "run.out"
    command = [*EDGE_SIM, "run", "--opcua-port", "off", "--modbus-port", "0", "--control-port", "0"]
    with output.open("wb") as sink:
        process = subprocess.Popen([*command, "--interval", "0.05"], stdout=sink, stderr=subprocess.STDOUT)
    try:
        wait_until_sync(lambda: "running" in output.read_text() or process.poll() is not None, 20, "edge-sim run up")
        text = output.read_text()
        assert process.poll() is None, text
        control = re.search(r"^Control 127\.0\.0\.1:(\d+) ", text, re.MULTILINE)
        modbus = re.search(r"^Modbus  127\.0\.0\.1:(\d+) ", text, re.MULTILINE)
        assert control, text
        assert modbus, text
        yield RunningSim(process, output, int(control.group(1)), int(modbus.group(1)))
        process.send_signal(signal.SIGTERM)
        assert process.wait(timeout=20) == 0
        assert "client write requests seen: 0" in output.read_text()
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()


@pytest.fixture
def modbus(running: RunningSim) -> Iterator[ModbusTcpClient]:
    client = ModbusTcpClient("127.0.0.1", port=running.modbus_port, timeout=2)
    assert client.connect()  # type: ignore[no-untyped-call]  # pymodbus leaves the sync client unannotated
    try:
        yield client
    finally:
        client.close()  # type: ignore[no-untyped-call]


def read_signal(client: ModbusTcpClient, name: str, unit: int = 1) -> float:
    """Signal ``name`` of the pump: float32 ABCD in input registers 2*i, 2*i+1."""
    address = 2 * PUMP_SIGNALS.index(name)
    response = client.read_input_registers(address, count=2, device_id=unit)
    assert not response.isError(), response
    value = client.convert_from_registers(response.registers, ModbusClientMixin.DATATYPE.FLOAT32)
    assert isinstance(value, float)
    return value


@pytest.mark.parametrize("fault", ["bearing_wear", "imbalance"])
def test_inject_moves_vibration_and_clear_brings_it_back(
    running: RunningSim, modbus: ModbusTcpClient, fault: str
) -> None:
    assert read_signal(modbus, "vibration_rms") < HEALTHY_VIBRATION
    done = running.inject("pump-1", fault, "--severity", "1", "--progression", "sudden")
    try:
        assert done.returncode == 0, done.stderr
        assert done.stdout.strip() == f"injected {fault} into pump-1: severity 1, sudden"
        wait_until_sync(
            lambda: read_signal(modbus, "vibration_rms") > FAULTY_VIBRATION, 10, f"{fault} raises vibration"
        )
    finally:
        cleared = running.inject("pump-1", "--clear", fault)
    assert cleared.returncode == 0, cleared.stderr
    assert cleared.stdout.strip() == "cleared 1 fault(s) on pump-1"
    wait_until_sync(lambda: read_signal(modbus, "vibration_rms") < HEALTHY_VIBRATION, 10, "vibration back to normal")


def test_clear_without_a_fault_ends_every_fault(running: RunningSim, modbus: ModbusTcpClient) -> None:
    assert running.inject("pump-1", "misalignment", "--progression", "sudden").returncode == 0
    assert running.inject("pump-1", "sensor_drift", "--signal", "flow").returncode == 0
    cleared = running.inject("pump-1", "--clear")
    assert (cleared.returncode, cleared.stdout.strip()) == (0, "cleared 2 fault(s) on pump-1")
    wait_until_sync(lambda: read_signal(modbus, "vibration_rms") < HEALTHY_VIBRATION, 10, "vibration back to normal")


def test_fault_then_clear_flag_clears_that_fault_only(running: RunningSim) -> None:
    assert running.inject("pump-1", "imbalance", "--progression", "sudden").returncode == 0
    assert running.inject("pump-1", "noisy_sensor", "--signal", "flow").returncode == 0
    try:
        cleared = running.inject("pump-1", "imbalance", "--clear")
        assert (cleared.returncode, cleared.stdout.strip()) == (0, "cleared 1 fault(s) on pump-1"), cleared.stderr
        again = running.inject("pump-1", "--clear", "imbalance")
        assert (again.returncode, again.stdout.strip()) == (0, "cleared 0 fault(s) on pump-1"), again.stderr
    finally:
        rest = running.inject("pump-1", "--clear")
    assert rest.stdout.strip() == "cleared 1 fault(s) on pump-1"  # the sensor fault was left alone


def test_protocol_fault_from_the_cli(running: RunningSim, modbus: ModbusTcpClient) -> None:
    done = running.inject("pump-1", "exception", "--protocol", "modbus", "--code", "device_busy")
    try:
        assert (done.returncode, done.stdout.strip()) == (0, "modbus exception on pump-1"), done.stderr
        response = modbus.read_input_registers(0, count=2, device_id=1)
        assert response.isError()
        assert response.exception_code == 6  # device busy
        assert read_signal(modbus, "flow", unit=2) is not None  # only pump-1 is hit (press-1: unit 2)
    finally:
        cleared = running.inject("pump-1", "--clear", "--protocol", "modbus")
    assert cleared.returncode == 0, cleared.stderr
    assert read_signal(modbus, "flow") > 0


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["pump-9", "imbalance"], "no machine 'pump-9' in this edge-sim run. Fix: use one of ['pump-1', 'press-1']"),
        (["pump-1", "wobble"], "pump-1 is a pump and has no fault 'wobble'. Fix: use one of ['bearing_wear', "),
        (
            ["press-1", "imbalance"],
            "press-1 is a press and has no fault 'imbalance'. Fix: use one of ['clogged_filter'",
        ),
        (["pump-9", "--clear"], "no machine 'pump-9'"),
        (["pump-1", "sensor_drift"], "needs a signal. Fix: add one of ['flow', 'outlet_pressure'"),
        (["pump-1", "imbalance", "--severity", "2"], "severity must be in (0, 1], got 2.0"),
        (["pump-1"], "name the fault to inject, or pass --clear"),
        (["pump-1", "imbalance", "--clear", "leak"], "name the fault once"),
        (["pump-1", "imbalance", "--progression", "sideways"], "invalid choice: 'sideways'"),
        (["pump-1", "exception", "--protocol", "opcua"], "exception is a Modbus fault"),
    ],
)
def test_bad_input_is_a_clear_error_and_exit_2(
    running: RunningSim, args: list[str], message: str, capsys: pytest.CaptureFixture[str]
) -> None:
    # in-process (the server is still the subprocess): the same code path, without a second start-up
    with contextlib.suppress(SystemExit):  # argparse's own errors exit 2 by raising
        code = main(["inject", *args, "--control", f"127.0.0.1:{running.control_port}"])
        assert code == 2
    stderr = capsys.readouterr().err
    assert stderr.splitlines()[-1].startswith("edge-sim"), stderr
    assert message in stderr
    assert running.process.poll() is None


def test_press_faults_listed_for_a_press_only(running: RunningSim) -> None:
    done = running.inject("press-1", "imbalance")
    listed = done.stderr.split("use one of ", 1)[1]
    assert "leak" in listed
    assert "bearing_wear" not in listed  # a press has no bearing fault in the library
    assert "cavitation" not in listed  # pumps only


def test_nothing_listening_says_how_to_start_it() -> None:
    port = free_port()
    done = subprocess.run(
        [*EDGE_SIM, "inject", "pump-1", "imbalance", "--control", f"127.0.0.1:{port}"],
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )
    assert done.returncode == 2
    assert done.stderr.strip() == (
        f"edge-sim: no edge-sim run is listening on 127.0.0.1:{port}; start it with edge-sim run --control-port {port}"
    )


async def test_control_listens_on_loopback_only_and_refuses_garbage() -> None:
    async with Simulation(opcua_port=None, modbus_port=None, host="0.0.0.0") as sim, ControlServer(sim, 0) as control:
        assert control._server is not None
        assert [s.getsockname()[0] for s in control._server.sockets] == ["127.0.0.1"]
        with pytest.raises(SimulatorError, match=r"unknown op 'reboot'"):
            await _request(control.port, {"op": "reboot"})
        with pytest.raises(SimulatorError, match=r"unknown key\(s\) \['command'\]"):
            await _request(control.port, {"op": "clear", "machine": "pump-1", "command": "rm"})
        assert await _request(control.port, {"op": "machines"}) == "pump-1 (pump), press-1 (press)"


async def _request(port: int, message: dict[str, object]) -> str:
    return await asyncio.to_thread(request, "127.0.0.1", port, message)
