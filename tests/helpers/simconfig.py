"""Machine configs that read the simulator, written from its published register map and node ids."""

from __future__ import annotations

from typing import Any

from connectors.modbus.config import ModbusMachine
from connectors.opcua.config import OpcUaMachine
from simulators import Simulation

NAMESPACE = "urn:edge-agent:simulator"

# A generous interval (and so timeout) by default: a busy CI machine must not turn a slow answer
# into a failed test. Tests about timing pass their own.


def opcua_machine(
    sim: Simulation, machine: str, *, extra_tags: list[dict[str, Any]] | None = None, **keys: Any
) -> OpcUaMachine:
    tags: list[dict[str, Any]] = [
        {"name": name, "node": f"nsu={NAMESPACE};s={machine}.{name}", "unit": unit}
        for name, unit in sim.signals(machine)
    ]
    tags += extra_tags or []
    return OpcUaMachine.model_validate(
        {
            "type": "opcua",
            "id": machine,
            "endpoint": sim.opcua.endpoint,
            "security": {"policy": "None", "mode": "None"},  # the simulator's default server offers only None
            "interval": "3s",
            "tags": tags,
            **keys,
        }
    )


def modbus_machine(
    sim: Simulation, machine: str, *, extra_tags: list[dict[str, Any]] | None = None, **keys: Any
) -> ModbusMachine:
    tags: list[dict[str, Any]] = []
    for i, (name, unit) in enumerate(sim.signals(machine)):
        tags.append({"name": name, "table": "input", "address": 2 * i, "type": "float32", "unit": unit})
        tags.append(
            {"name": f"{name}_x10", "table": "holding", "address": i, "type": "int16", "scale": 0.1, "unit": unit}
        )
    tags.append({"name": "parts_count", "table": "holding", "address": 100, "type": "uint32"})
    tags.append({"name": "state_code", "table": "holding", "address": 102, "type": "uint16"})
    tags += extra_tags or []
    return ModbusMachine.model_validate(
        {
            "type": "modbus",
            "id": machine,
            "host": "127.0.0.1",
            "port": sim.modbus.port,
            "unit_id": sim.modbus.unit_id(machine),
            "interval": "3s",
            "tags": tags,
            **keys,
        }
    )
