"""Protocol-level faults: the wire misbehaves while the machine is fine.

These test the agent's connectors the way a real plant does: a slow PLC (latency), a busy or
confused Modbus device (exception responses), a gateway whose values freeze (stale), an OPC
UA server reporting bad quality (status codes), and connections dropped under the client.

They are not machine faults: they leave the physics and the ground truth alone.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Literal

from asyncua.ua.status_codes import StatusCodes

from simulators.errors import SimulatorError

if TYPE_CHECKING:
    from simulators.modbus_server import ModbusSimServer
    from simulators.opcua_server import OpcUaSimServer

ProtocolFaultKind = Literal["latency", "exception", "stale", "bad_status", "clock_offset"]
PROTOCOL_FAULT_KINDS: tuple[ProtocolFaultKind, ...] = ("latency", "exception", "stale", "bad_status", "clock_offset")

MODBUS_EXCEPTIONS: dict[str, int] = {
    "illegal_function": 0x01,
    "illegal_address": 0x02,
    "illegal_value": 0x03,
    "device_failure": 0x04,
    "acknowledge": 0x05,
    "device_busy": 0x06,
    "gateway_path_unavailable": 0x0A,
    "gateway_no_response": 0x0B,
}


def modbus_exception(code: str | int | None) -> int:
    """A Modbus exception code from its name ("device_busy") or number (1-11)."""
    if isinstance(code, str) and code.lower() in MODBUS_EXCEPTIONS:
        return MODBUS_EXCEPTIONS[code.lower()]
    if isinstance(code, int) and not isinstance(code, bool) and code in MODBUS_EXCEPTIONS.values():
        return code
    raise SimulatorError(f"unknown Modbus exception {code!r}. Fix: use one of {sorted(MODBUS_EXCEPTIONS)}")


def opcua_status(code: str | int | None) -> int:
    """An OPC UA status code from its name ("BadSensorFailure", "UncertainLastUsableValue") or value."""
    if isinstance(code, str):
        value = getattr(StatusCodes, code, None)
        if isinstance(value, int) and code != "Good":
            return value
    if isinstance(code, int) and not isinstance(code, bool) and code > 0 and code <= 0xFFFFFFFF:
        return code
    raise SimulatorError(
        f"unknown or Good OPC UA status code {code!r}. Fix: use a name from asyncua.ua.StatusCodes, "
        "e.g. 'BadSensorFailure', 'BadCommunicationError' or 'UncertainLastUsableValue'"
    )


def checked_code(protocol: str, kind: str, code: str | int | None) -> int | None:
    """The numeric code a fault needs (Modbus exception, OPC UA status), after checking the
    fault fits the protocol; None for kinds without a code. Pure, so bad input is refused before
    any server is touched."""
    if protocol == "modbus" and kind == "bad_status":
        raise SimulatorError("bad_status is an OPC UA fault. Fix: for Modbus use kind='exception'")
    if protocol == "opcua" and kind == "exception":
        raise SimulatorError("exception is a Modbus fault. Fix: for OPC UA use kind='bad_status'")
    if protocol == "modbus" and kind == "clock_offset":
        raise SimulatorError("clock_offset is an OPC UA fault: Modbus carries no timestamps. Fix: use protocol='opcua'")
    if kind == "exception":
        return modbus_exception(code)
    if kind == "bad_status":
        return opcua_status(code)
    return None


def apply_modbus_fault(
    server: ModbusSimServer,
    kind: str,
    machines: list[str],
    *,
    seconds: float | None,
    code: int | None,
    probability: float = 1.0,
) -> None:
    """Set a checked protocol fault on the units of ``machines``."""
    for machine_id in machines:
        faults = server.faults[server.unit_id(machine_id)]
        faults.probability = probability
        if kind == "latency":
            faults.latency_s = seconds or 0.0
        elif kind == "exception":
            faults.exception = code
        else:
            faults.stale = True


def apply_opcua_fault(
    server: OpcUaSimServer,
    kind: str,
    machines: list[str],
    *,
    seconds: float | None,
    code: int | None,
    probability: float = 1.0,
) -> None:
    """Set a checked protocol fault on the nodes of ``machines``."""
    for machine_id in machines:
        faults = server.faults[machine_id]
        faults.probability = probability
        if kind == "latency":
            faults.latency_s = seconds or 0.0
        elif kind == "bad_status":
            faults.status_code = code
        elif kind == "clock_offset":
            faults.clock_offset_ns = round((seconds or 0.0) * 1_000_000) * 1000  # whole microseconds
        else:
            faults.stale = True
