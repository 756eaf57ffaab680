"""OPC UA's entry in the protocol registry (``connectors/registry.py``)."""

from __future__ import annotations

from connectors.diagnosis import MachineDoctor
from connectors.discovery import Discoverer
from connectors.opcua.config import OpcUaMachine
from connectors.registry import ProtocolEntry


def _discoverer() -> Discoverer:
    from connectors.opcua.discover import OpcUaDiscoverer

    return OpcUaDiscoverer()


def _doctor() -> MachineDoctor:
    from connectors.opcua.doctor import OpcUaDoctor

    return OpcUaDoctor()


PROTOCOL = ProtocolEntry(machine=OpcUaMachine, make_discoverer=_discoverer, make_doctor=_doctor)
