"""Protocol connectors, registered by their config's ``type`` literal.

Adding a protocol: a new folder with its config model (with ``type: Literal[...]`` and
``build_connector()``) and one entry in ``MachineConfig`` below.
"""

from __future__ import annotations

from typing import Annotated

from pydantic import Field

from connectors.modbus.config import ModbusMachine
from connectors.opcua.config import OpcUaMachine

MachineConfig = Annotated[OpcUaMachine | ModbusMachine, Field(discriminator="type")]
"""Any machine section of the config, chosen by its ``type`` key."""

MACHINE_TYPES: dict[str, type[OpcUaMachine | ModbusMachine]] = {
    "opcua": OpcUaMachine,
    "modbus": ModbusMachine,
}
