"""Modbus RTU on a serial line: the simulator at one end of a socat serial pair, the connector at the other."""

from __future__ import annotations

import os
import shutil
import subprocess
import time
from collections.abc import AsyncIterator, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest
from pydantic import ValidationError

from connectors.modbus.client import ModbusConnector
from connectors.modbus.config import ModbusMachine
from edge_agent.core.errors import ConfigError, ConnectError, ReadTimeout
from edge_agent.core.samples import Quality, Sample
from edge_agent.runtime.loader import parse_config
from simulators import Simulation
from tests.helpers.waiting import wait_until, wait_until_sync

NOBODY = 65534
"""The unprivileged user's id on Debian."""


class SerialPair:
    """Two linked pseudo-terminals: what one end writes, the other reads, like a null-modem cable."""

    def __init__(self, folder: Path) -> None:
        self.server_end = str(folder / "sim")
        self.agent_end = str(folder / "agent")


@pytest.fixture
def serial_pair(tmp_path: Path) -> Iterator[SerialPair]:
    socat = shutil.which("socat")
    if socat is None:
        pytest.fail("socat is not installed. Fix: apt-get install -y socat (scripts/test installs it)")
    pair = SerialPair(tmp_path)
    process = subprocess.Popen(
        [socat, "-d", "-d", f"pty,raw,echo=0,link={pair.server_end}", f"pty,raw,echo=0,link={pair.agent_end}"],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    try:
        wait_until_sync(
            lambda: (os.path.exists(pair.server_end) and os.path.exists(pair.agent_end)) or process.poll() is not None,
            timeout=10,
            message="socat to create both ends of the serial pair",
        )
        assert process.poll() is None, f"socat exited: {process.stderr.read() if process.stderr else b''!r}"
        yield pair
    finally:
        process.terminate()
        try:
            process.wait(timeout=5)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(timeout=5)
        if process.stderr is not None:
            process.stderr.close()


@pytest.fixture
async def serial_sim(serial_pair: SerialPair) -> AsyncIterator[Simulation]:
    """The simulator serving Modbus RTU on one end of the pair (19200 8N1), nothing else."""
    async with Simulation(seed=3, update_interval=0.1, opcua_port=None, modbus_serial=serial_pair.server_end) as sim:
        yield sim
    assert sim.write_count == 0, "the connector sent a write request over the serial line"


def float_tags(sim: Simulation, machine: str, *, unit_id: int | None = None) -> list[dict[str, Any]]:
    """Every signal of ``machine`` as float32 input registers, as the simulator's map lays them out."""
    return [
        {"name": f"{machine}.{name}", "table": "input", "address": 2 * i, "type": "float32", "unit_id": unit_id}
        for i, (name, _) in enumerate(sim.signals(machine))
    ]


def serial_machine(pair: SerialPair, tags: list[dict[str, Any]], **keys: Any) -> ModbusMachine:
    line = {"device": pair.agent_end, "baudrate": 19200, "parity": "N", "stopbits": 1, **keys.pop("serial", {})}
    return ModbusMachine.model_validate(
        {"type": "modbus", "id": "line-1", "serial": line, "interval": "3s", "tags": tags, **keys}
    )


def served_at_once(sim: Simulation, samples: dict[str, Sample], machine: str) -> bool:
    """Whether one single served update of ``machine`` holds every float32 value read from it."""
    candidates: set[int] | None = None
    for name, _ in sim.signals(machine):
        value = samples[f"{machine}.{name}"].value
        times = {ts for ts, served in sim.served("modbus", machine, name) if served == value}
        candidates = times if candidates is None else candidates & times
    return bool(candidates)


async def test_several_units_read_over_a_serial_line_equal_what_was_served(
    serial_sim: Simulation, serial_pair: SerialPair
) -> None:
    sim = serial_sim
    first, second = sim.machine_ids[0], sim.machine_ids[1]
    tags = float_tags(sim, first) + float_tags(sim, second, unit_id=sim.modbus.unit_id(second))
    tags.append({"name": "parts_count", "table": "holding", "address": 100, "type": "uint32"})
    config = serial_machine(pair=serial_pair, tags=tags, unit_id=sim.modbus.unit_id(first))
    connector = ModbusConnector(config)
    await connector.connect()
    try:
        assert connector.requests_per_cycle == 3  # unit 1: holding 100-101, input 0..; unit 2: input 0..
        for _ in range(3):
            await sim.wait_updates(1)
            batch = await connector.read()
            samples = {s.tag: s for s in batch.samples}
            assert all(s.quality is Quality.GOOD for s in batch.samples), batch
            assert served_at_once(sim, samples, first), "unit 1's values are not one served update"
            assert served_at_once(sim, samples, second), "unit 2's values are not one served update"
            assert isinstance(samples["parts_count"].value, int)
    finally:
        await connector.close()
    assert sim.write_count == 0


async def test_a_silent_unit_on_the_line_marks_only_its_tags_bad(
    serial_sim: Simulation, serial_pair: SerialPair
) -> None:
    sim = serial_sim
    machine = sim.machine_ids[0]
    tags = float_tags(sim, machine)
    tags.append({"name": "absent", "table": "holding", "address": 0, "type": "int16", "unit_id": 99})
    config = serial_machine(serial_pair, tags, unit_id=sim.modbus.unit_id(machine), request_timeout="500ms")
    connector = ModbusConnector(config)
    await connector.connect()
    try:
        for _ in range(2):  # the second poll proves the line still works after the unanswered request
            batch = await connector.read()
            samples = {s.tag: s for s in batch.samples}
            assert samples["absent"].quality is Quality.BAD
            assert "no answer within 0.5 s" in (samples["absent"].reason or "")
            others = [s for s in batch.samples if s.tag != "absent"]
            assert all(s.quality is Quality.GOOD for s in others), others
            assert served_at_once(sim, samples, machine)
    finally:
        await connector.close()


async def test_reads_resume_after_the_simulator_restarts_on_the_line(
    serial_sim: Simulation, serial_pair: SerialPair
) -> None:
    sim = serial_sim
    machine = sim.machine_ids[0]
    config = serial_machine(
        serial_pair, float_tags(sim, machine), unit_id=sim.modbus.unit_id(machine), interval="2s", timeout="1s"
    )
    connector = ModbusConnector(config)
    await connector.connect()
    try:
        assert all(s.quality is Quality.GOOD for s in (await connector.read()).samples)
        await sim.stop_server("modbus")
        with pytest.raises(ReadTimeout, match="no answer from the device"):
            await connector.read()
        await sim.start_server("modbus")
        recovered: list[Sample] = []

        async def poll() -> None:
            try:
                batch = await connector.read()
            except (ConnectError, ReadTimeout):
                await connector.close()
                await connector.connect()  # what the runtime does, with backoff
                return
            recovered[:] = list(batch.samples)

        for _ in range(10):
            await poll()
            if recovered:
                break
        await wait_until(lambda: bool(recovered), timeout=1, message="a poll after the restart")
        assert all(s.quality is Quality.GOOD for s in recovered)
        assert served_at_once(sim, {s.tag: s for s in recovered}, machine)
    finally:
        await connector.close()


# --- bad input ------------------------------------------------------------------------------------


async def test_a_serial_port_that_does_not_exist_names_the_file_and_the_fix(tmp_path: Path) -> None:
    missing = tmp_path / "ttyUSB7"
    config = ModbusMachine.model_validate(
        {"type": "modbus", "id": "m", "serial": {"device": str(missing)}, "tags": [{"name": "a", "address": 0}]}
    )
    connector = ModbusConnector(config)
    with pytest.raises(ConnectError) as caught:
        await connector.connect()
    message = str(caught.value)
    assert f"the serial port {missing} does not exist" in message
    assert "Fix: check serial.device" in message
    assert "/dev/serial/by-id/" in message
    await connector.close()


async def test_a_file_that_is_not_a_serial_port_is_named(tmp_path: Path) -> None:
    plain = tmp_path / "notes.txt"
    plain.write_text("not a tty")
    config = ModbusMachine.model_validate(
        {"type": "modbus", "id": "m", "serial": {"device": str(plain)}, "tags": [{"name": "a", "address": 0}]}
    )
    connector = ModbusConnector(config)
    with pytest.raises(ConnectError, match="is not a serial port"):
        await connector.connect()
    await connector.close()
    assert plain.read_text() == "not a tty"  # looked at, not written


@contextmanager
def without_root() -> Iterator[None]:
    """Root opens any device file: drop to the unprivileged user ``nobody`` meanwhile (effective uid only)."""
    if os.geteuid() != 0:
        yield
        return
    os.seteuid(NOBODY)
    try:
        yield
    finally:
        os.seteuid(0)


async def test_a_serial_port_the_user_may_not_open_points_at_the_dialout_group(serial_pair: SerialPair) -> None:
    device = os.path.realpath(serial_pair.agent_end)  # /dev/pts/N: the link's folder may be private to root
    os.chmod(device, 0)
    config = ModbusMachine.model_validate(
        {"type": "modbus", "id": "m", "serial": {"device": device}, "tags": [{"name": "a", "address": 0}]}
    )
    connector = ModbusConnector(config)
    with without_root(), pytest.raises(ConnectError) as caught:
        await connector.connect()
    await connector.close()
    message = str(caught.value)
    assert f"the agent's user may not read and write the serial port {device}" in message
    assert "sudo usermod -aG dialout USER" in message


async def test_serial_quirks_reopen_the_port_every_poll_and_pause_between_requests(
    serial_sim: Simulation, serial_pair: SerialPair
) -> None:
    sim = serial_sim
    machine = sim.machine_ids[0]
    config = serial_machine(
        serial_pair,
        float_tags(sim, machine),
        unit_id=sim.modbus.unit_id(machine),
        close_after_cycle=True,
        pause_between_requests="20ms",
        one_request_per_tag=True,
        serial={"inter_frame_delay": "5ms"},
    )
    connector = ModbusConnector(config)
    await connector.connect()
    try:
        assert connector.requests_per_cycle == len(sim.signals(machine))  # one read per tag
        for _ in range(2):
            started = time.monotonic()
            batch = await connector.read()
            took = time.monotonic() - started
            assert all(s.quality is Quality.GOOD for s in batch.samples), batch
            for name, _ in sim.signals(machine):  # one read per tag: each may come from another update
                value = next(s.value for s in batch.samples if s.tag == f"{machine}.{name}")
                assert value in {served for _, served in sim.served("modbus", machine, name)}, name
            assert took >= 0.020 * (connector.requests_per_cycle - 1)  # the pauses were kept
    finally:
        await connector.close()


def serial_section(**line: Any) -> str:
    keys = ", ".join(f"{key}: {value}" for key, value in line.items())
    return f"machines:\n  - type: modbus\n    id: m1\n    serial: {{{keys}}}\n    tags: [{{name: a, address: 0}}]\n"


@pytest.mark.parametrize(
    ("line", "expected"),
    [
        ({"device": "/dev/ttyUSB0", "parity": "even"}, "serial.parity: parity is N (none), E (even) or O (odd) "
         "(got 'even'). Fix: parity: E"),
        ({"device": "/dev/ttyUSB0", "baudrate": 96000}, "serial.baudrate: baudrate 96000 is not a rate a serial "
         "port can be set to. Fix: use the device's rate, e.g. 9600"),
        ({"device": "/dev/ttyUSB0", "baudrate": 0}, "e.g. 50"),
        ({"device": "/dev/ttyUSB0", "stopbits": 3}, "stopbits is 1 or 2 (got 3)"),
        ({"device": "/dev/ttyUSB0", "bytesize": 7}, "Modbus RTU sends 8 data bits per character"),
        ({"device": "ttyUSB0"}, "Fix: write device: /dev/ttyUSB0"),
        ({"device": "rfc2217://10.0.0.5:4001"}, "not a URL"),
        ({"device": "/dev/ttyUSB0", "inter_frame_delay": "2s"}, "inter_frame_delay must be between 0 and 1 s"),
    ],
)  # fmt: skip
def test_bad_serial_settings_name_the_key_and_the_fix(line: dict[str, Any], expected: str) -> None:
    with pytest.raises(ConfigError) as caught:
        parse_config(serial_section(**line), file="agent.yaml")
    text = str(caught.value)
    assert "agent.yaml" in text
    assert "line 4: machines[0].serial." in text
    assert expected in text


@pytest.mark.parametrize(
    ("keys", "expected"),
    [
        ({"host": "10.0.0.5", "serial": {"device": "/dev/ttyUSB0"}}, "host (10.0.0.5) and serial (/dev/ttyUSB0) are "
         "both set"),
        ({"host": None}, "where is the machine? Fix: add host: (and port:) for Modbus TCP, or serial:"),
        ({"serial": {"device": "/dev/ttyUSB0"}, "port": 5020}, "port (5020) is the TCP port and does not apply"),
        ({"serial": {"device": "/dev/ttyUSB0"}, "framing": "rtu_over_tcp"}, "a serial line always carries RTU"),
        ({"serial": {"device": "/dev/ttyUSB0"}, "tcp_client": "pymodbus"}, "tcp_client chooses the client for "
         "framing: tcp"),
        ({"host": "10.0.0.5", "framing": "rtu_over_tcp", "tcp_client": "pymodbus"}, "Fix: remove tcp_client"),
    ],
)  # fmt: skip
def test_tcp_and_serial_keys_do_not_mix(keys: dict[str, Any], expected: str) -> None:
    with pytest.raises(ValidationError) as caught:
        ModbusMachine.model_validate({"type": "modbus", "id": "m", "tags": [{"name": "a", "address": 0}], **keys})
    assert expected in str(caught.value)


def test_neither_host_nor_serial_names_the_missing_key_and_the_serial_way() -> None:
    section = "machines:\n  - type: modbus\n    id: m1\n    tags: [{name: a, address: 0}]\n"
    with pytest.raises(ConfigError) as caught:
        parse_config(section, file="agent.yaml")
    text = str(caught.value)
    assert "machines[0].host: required key 'host' is missing" in text
    assert "set serial: {device: /dev/ttyUSB0} instead" in text


def test_the_frame_gap_follows_the_specification() -> None:
    def gap(**line: Any) -> float:
        config = ModbusMachine.model_validate(
            {
                "type": "modbus",
                "id": "m",
                "serial": {"device": "/dev/ttyUSB0", **line},
                "tags": [{"name": "a", "address": 0}],
            }
        )
        assert config.serial is not None
        return config.serial.frame_gap

    assert gap(baudrate=9600, parity="E") == pytest.approx(3.5 * 11 / 9600)  # start + 8 data + parity + stop
    assert gap(baudrate=9600, parity="N", stopbits=1) == pytest.approx(3.5 * 10 / 9600)
    assert gap(baudrate=115200) == pytest.approx(0.00175)  # fixed above 19200 baud
    assert gap(baudrate=9600, inter_frame_delay="10ms") == pytest.approx(0.010)


def test_two_sections_on_one_serial_port_are_refused_at_load(tmp_path: Path) -> None:
    # A symlink to the same port (as /dev/serial/by-id/ gives) is the same port.
    port = tmp_path / "ttyUSB0"
    port.touch()
    alias = tmp_path / "by-id-usb-FTDI"
    alias.symlink_to(port)
    text = (
        "machines:\n"
        f"  - {{type: modbus, id: pump, serial: {{device: {port}}}, tags: [{{name: a, address: 0}}]}}\n"
        f"  - {{type: modbus, id: press, serial: {{device: {alias}}}, tags: [{{name: a, address: 0, unit_id: 2}}]}}\n"
        f"  - {{type: modbus, id: spare, enabled: false, serial: {{device: {port}}}, tags: [{{name: a, address: 1}}]}}"
    )
    with pytest.raises(ConfigError) as caught:
        parse_config(text, file="agent.yaml")
    assert caught.value.problems == [
        f"line 3: machines[1].serial.device: machine 'press' uses serial port {alias} like machine 'pump'; a port "
        "opens for one section only. Fix: put every device on that line into one machine section, with unit_id per "
        "tag (or disable one of them)"
    ]
