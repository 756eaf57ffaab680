"""Protocol connectors, and the registry that finds each protocol's parts by its config's ``type``.

Adding a protocol: a new folder (see ``connectors/README.md``) and its machine model in the
``MachineConfig`` union below; ``PROTOCOLS`` finds the rest from the folder's ``protocol.py``.
"""

from __future__ import annotations

from typing import Annotated

from pydantic import Field

from connectors.base import MachineConfigBase, TagConfig
from connectors.modbus.config import ModbusMachine
from connectors.opcua.config import OpcUaMachine
from connectors.registry import ProtocolEntry, protocols_of

MachineConfig = Annotated[OpcUaMachine | ModbusMachine, Field(discriminator="type")]
"""Any machine section of the config, chosen by its ``type`` key: the one list of protocols."""

PROTOCOLS: dict[str, ProtocolEntry] = protocols_of(MachineConfig)
"""Each protocol's parts (machine and tag model, discoverer, doctor checks) by its ``type`` key."""

MACHINE_TYPES: dict[str, type[MachineConfigBase]] = {name: entry.machine for name, entry in PROTOCOLS.items()}
"""The machine model of each protocol, by its ``type`` key."""

__all__ = ["MACHINE_TYPES", "PROTOCOLS", "MachineConfig", "ProtocolEntry", "TagConfig"]
