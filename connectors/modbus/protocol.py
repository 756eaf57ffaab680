"""Modbus's entry in the protocol registry (``connectors/registry.py``)."""

from __future__ import annotations

from connectors.diagnosis import MachineDoctor
from connectors.discovery import Discoverer
from connectors.modbus.config import ModbusMachine
from connectors.registry import ProtocolEntry


def _discoverer() -> Discoverer:
    from connectors.modbus.discover import ModbusDiscoverer

    return ModbusDiscoverer()


def _doctor() -> MachineDoctor:
    from connectors.modbus.doctor import ModbusDoctor

    return ModbusDoctor()


PROTOCOL = ProtocolEntry(machine=ModbusMachine, make_discoverer=_discoverer, make_doctor=_doctor)
