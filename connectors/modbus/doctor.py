"""What ``edge-agent doctor`` checks of a Modbus machine beyond "connects and reads": nothing more.

A Modbus connect has no handshake to report on (no security, no login), so the doctor's generic
rows and fixes say it all; this part only names the connector and where the device is.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from connectors.modbus.config import ModbusMachine

if TYPE_CHECKING:
    from connectors.base import Connector
    from connectors.diagnosis import Row


class ModbusDoctor:
    """The Modbus part of the doctor (``connectors.diagnosis.MachineDoctor``)."""

    def probe(self, machine: ModbusMachine) -> Connector:
        """The agent's own connector: a Modbus connect leaves nothing on disk."""
        return machine.build_connector()

    def rows(self, machine: ModbusMachine, connector: Connector, connected: bool, failure: str | None) -> list[Row]:
        """No rows beyond the generic ones."""
        return []

    def fix(self, machine: ModbusMachine, reason: str) -> str | None:
        """None: the generic fixes (refused, no answer) fit Modbus."""
        return None

    def where(self, machine: ModbusMachine) -> str:
        """``host:port`` of the device or gateway."""
        return f"{machine.host}:{machine.port}"
