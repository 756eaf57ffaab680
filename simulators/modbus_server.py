"""The Modbus face of a simulation: one pymodbus server (TCP, or RTU on a serial line), one unit id per machine.

Built on pymodbus's ``SimDevice`` datastore (the non-deprecated API since 3.10). Each unit has
separate tables (coils, discrete inputs, holding, input); every register is read-only, so a
client write gets exception 02 (illegal address) and changes nothing. Register values are
copied from the plant's latest image inside the device's ``action`` hook, which runs on every
request: the response is always the image of one single plant update.

Every request with a write function code (5, 6, 15, 16, 22, 23) is counted in ``write_count``,
whether or not the datastore accepted it. Unknown unit ids answer exception 0B (gateway target
failed to respond), as a TCP gateway would; on a serial line they get no answer, as on a real bus.

``serial="/dev/ttyUSB1"`` (or one end of a ``socat`` pty pair) serves Modbus RTU on that serial
device instead of TCP, at ``SERIAL_SETTINGS`` (19200 8N1: a virtual pty pair takes no parity).
"""

from __future__ import annotations

import asyncio
import functools
import logging
import random
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any, Literal

from pymodbus import FramerType
from pymodbus.constants import ExcCodes
from pymodbus.exceptions import NoSuchIdException
from pymodbus.pdu.device import ModbusDeviceIdentification
from pymodbus.server import ModbusSerialServer, ModbusTcpServer
from pymodbus.simulator import DataType, SimData, SimDevice

from simulators.errors import UnknownMachineError
from simulators.plant import Reading, status_values
from simulators.register_map import BYTE_ORDERS, HOLDING_SIZE, float32_round, holding_image, input_image

log = logging.getLogger(__name__)

WRITE_FUNCTION_CODES = frozenset({5, 6, 15, 16, 22, 23})
Framing = Literal["tcp", "rtu_over_tcp"]
FRAMINGS: tuple[Framing, ...] = ("tcp", "rtu_over_tcp")
"""``tcp``: Modbus TCP (MBAP header); ``rtu_over_tcp``: RTU frames with CRC in the TCP stream, as a
transparent serial gateway sends them."""
_IDENTITY = ModbusDeviceIdentification(  # type: ignore[no-untyped-call]  # pymodbus leaves it unannotated
    info_name={
        "VendorName": "edge-agent",
        "ProductCode": "EDGE-SIM",
        "ProductName": "edge-agent machine simulator",
        "ModelName": "simulated plant",
        "MajorMinorRevision": "1.0",
    }
)
"""Answered to function code 43/14 (read device identification), the same for every unit."""
READ_INPUT = 4
READ_HOLDING = 3
SERIAL_SETTINGS: dict[str, Any] = {"baudrate": 19200, "bytesize": 8, "parity": "N", "stopbits": 1}
"""The serial line's settings, 19200 8N1: the connector's default, and Linux ptys (socat) reject parity."""


@dataclass(slots=True)
class UnitFaults:
    """Protocol-level misbehaviour of one unit, set through ``Simulation.inject_protocol_fault``."""

    latency_s: float = 0.0
    exception: int | None = None
    stale: bool = False
    probability: float = 1.0
    """Share of requests that get the latency and the exception (1: all; 0.2: an intermittent fault)."""


class ModbusSimServer:
    """A pymodbus server serving one plant on ``host:port`` (port 0: ephemeral, see ``.port``) or ``serial``."""

    def __init__(
        self,
        host: str,
        port: int,
        machines: Iterable[tuple[str, int]],
        seed: int = 1,
        *,
        framing: Framing = "tcp",
        byte_order: str = "ABCD",
        serial: str | None = None,
    ) -> None:
        if framing not in FRAMINGS:
            raise ValueError(f"framing must be one of {FRAMINGS}, got {framing!r}")
        if serial is not None and framing != "tcp":
            raise ValueError("a serial line always carries RTU frames; framing applies to TCP only")
        self.serial = serial
        """The serial device served (RTU), or None for TCP."""
        if byte_order not in BYTE_ORDERS:
            raise ValueError(f"byte_order must be one of {BYTE_ORDERS}, got {byte_order!r}")
        self.byte_order = byte_order
        self.host = host
        self.framing: Framing = framing
        self._rng = random.Random(f"modbus-faults-{seed}")
        self._requested_port = port
        self._units: dict[str, int] = {}
        self._signal_counts: dict[int, int] = {}
        for index, (machine_id, signal_count) in enumerate(machines):
            self._units[machine_id] = index + 1
            self._signal_counts[index + 1] = signal_count
        self._input: dict[int, list[int]] = {u: [0] * (2 * n) for u, n in self._signal_counts.items()}
        self._holding: dict[int, list[int]] = {u: [0] * HOLDING_SIZE for u in self._signal_counts}
        self.faults: dict[int, UnitFaults] = {u: UnitFaults() for u in self._signal_counts}
        self._server: ModbusTcpServer | ModbusSerialServer | None = None
        self._port: int | None = None
        self.write_count = 0

    @property
    def port(self) -> int:
        """The port actually bound (valid once started; a serial server has none)."""
        if self.serial is not None:
            raise RuntimeError(f"the Modbus server serves the serial line {self.serial}, not a TCP port")
        if self._port is None:
            raise RuntimeError("the Modbus server is not started")
        return self._port

    def unit_id(self, machine_id: str) -> int:
        """The Modbus unit id of a machine (1-based, its position in the plant)."""
        try:
            return self._units[machine_id]
        except KeyError:
            raise UnknownMachineError(machine_id, list(self._units)) from None

    async def start(self) -> None:
        """Build the unit datastores and listen."""
        devices = [self._device(unit, count) for unit, count in self._signal_counts.items()]
        devices.append(self._device(0, max(self._signal_counts.values())))  # every other unit id
        if self.serial is not None:
            await self._start_serial(devices)
            return
        port = self._port if self._port is not None else self._requested_port  # a restart keeps its port
        server = ModbusTcpServer(
            devices,
            address=(self.host, port),
            framer=FramerType.RTU if self.framing == "rtu_over_tcp" else FramerType.SOCKET,
            trace_pdu=self._trace_pdu,
            identity=_IDENTITY,
        )
        try:
            await server.serve_forever(background=True)
        except RuntimeError as exc:  # pymodbus reports a failed bind this way; callers expect OSError
            raise OSError(f"the Modbus server cannot listen on {self.host}:{port}") from exc
        self._server = server
        self._port = _bound_port(server.transport)
        log.info("Modbus simulator listening on %s:%d", self.host, self._port)

    async def _start_serial(self, devices: list[SimDevice]) -> None:
        """Serve RTU on the serial device; unknown unit ids stay silent, as devices on a bus do."""
        server = ModbusSerialServer(
            devices,
            port=self.serial or "",
            framer=FramerType.RTU,
            identity=_IDENTITY,
            trace_pdu=self._trace_pdu,
            ignore_missing_devices=True,
            **SERIAL_SETTINGS,
        )
        try:
            await server.serve_forever(background=True)
        except RuntimeError as exc:  # pymodbus logs the cause and reports only that it could not listen
            raise OSError(
                f"the Modbus server cannot open the serial device {self.serial} (missing, or no permission)"
            ) from exc
        self._server = server
        log.info("Modbus simulator serving RTU on %s", self.serial)

    def _device(self, unit: int, signal_count: int) -> SimDevice:
        bits = [SimData(0, datatype=DataType.BITS, readonly=True)]
        holding = [SimData(0, count=HOLDING_SIZE, values=0, datatype=DataType.REGISTERS, readonly=True)]
        inputs = [SimData(0, count=2 * signal_count, values=0, datatype=DataType.REGISTERS, readonly=True)]
        return SimDevice(
            unit, simdata=(list(bits), list(bits), holding, inputs), action=functools.partial(self._action, unit)
        )

    @property
    def running(self) -> bool:
        """Whether the server is listening."""
        return self._server is not None

    async def stop(self) -> None:
        """Close client connections and stop listening. Idempotent; ``start`` again reuses the port."""
        server, self._server = self._server, None
        if server is not None:
            await server.shutdown()  # type: ignore[no-untyped-call]
            await asyncio.sleep(0)

    def drop_connections(self) -> int:
        """Close every client connection (the listener stays up); returns how many were closed."""
        if self._server is None:
            return 0
        connections = list(self._server.active_connections.values())
        for connection in connections:
            connection.close()
        return len(connections)

    def publish(self, readings: dict[str, Reading], timestamp_ns: int) -> dict[str, dict[str, float]]:
        """Update the register images; return the float32 values now served (for the history).

        Stale units keep their old image (and the returned values say so).
        """
        del timestamp_ns  # Modbus carries no timestamp; the caller records it with the values.
        served: dict[str, dict[str, float]] = {}
        for machine_id, reading in readings.items():
            unit = self._units[machine_id]
            if not self.faults[unit].stale:
                values = list(reading.values.values())
                self._input[unit] = input_image(values, self.byte_order)
                self._holding[unit] = holding_image(values, reading.parts_count, reading.state)
                served[machine_id] = {name: float32_round(v) for name, v in reading.values.items()}
                served[machine_id].update(status_values(reading))
        return served

    def _trace_pdu(self, sending: bool, pdu: Any) -> Any:
        if not sending and getattr(pdu, "function_code", None) in WRITE_FUNCTION_CODES:
            self.write_count += 1
        return pdu

    async def _action(
        self,
        unit: int,
        function_code: int,
        _start_address: int,
        _address: int,
        _count: int,
        registers: list[int],
        set_values: list[int] | list[bool] | None,
    ) -> ExcCodes | None:
        if unit == 0:
            if self.serial is not None:
                raise NoSuchIdException  # no device answers on the bus: the client times out
            return ExcCodes.GATEWAY_NO_RESPONSE
        faults = self.faults[unit]
        hit = faults.probability >= 1.0 or self._rng.random() < faults.probability
        if hit and faults.latency_s > 0:
            await asyncio.sleep(faults.latency_s)
        if hit and faults.exception is not None:
            return ExcCodes(faults.exception)
        if set_values is not None:
            return ExcCodes.ILLEGAL_ADDRESS
        if function_code == READ_INPUT:
            image = self._input[unit]
        elif function_code == READ_HOLDING:
            image = self._holding[unit]
        else:
            return None
        registers[: len(image)] = image  # the tables start at address 0
        return None


def _bound_port(listener: object) -> int:
    """The port an asyncio server listens on (pymodbus types its listener as a plain transport)."""
    sockets = getattr(listener, "sockets", None) or ()
    for sock in sockets:
        return int(sock.getsockname()[1])
    raise RuntimeError("the Modbus server has no listening socket")
