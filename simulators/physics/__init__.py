"""Pure machine physics: no I/O, no clock, deterministic for a seed and a number of steps."""

from simulators.physics.base import MachineModel, MachineState, Modifiers, SignalSpec
from simulators.physics.registry import DEFAULT_PLANT, MACHINE_KINDS, build_machine, resolve_machines

__all__ = [
    "DEFAULT_PLANT",
    "MACHINE_KINDS",
    "MachineModel",
    "MachineState",
    "Modifiers",
    "SignalSpec",
    "build_machine",
    "resolve_machines",
]
