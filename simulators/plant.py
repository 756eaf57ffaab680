"""A plant: the machines of one simulation, stepped together on one simulated clock.

Pure like the models it holds: ``step(dt)`` advances every machine and returns their readings.
The servers serve these readings; ``edge-sim record`` writes them to CSV.
"""

from __future__ import annotations

from dataclasses import dataclass

from simulators.physics import MachineModel, MachineState, build_machine
from simulators.physics.registry import MachinesArg, resolve_machines


@dataclass(frozen=True, slots=True)
class Reading:
    """One machine after one step: signal values in register-map order, state, parts counter."""

    machine_id: str
    values: dict[str, float]
    state: MachineState
    parts_count: int


class Plant:
    """The machines of a simulation, built from a seed, stepped on one simulated clock."""

    def __init__(self, seed: int = 1, machines: MachinesArg = None) -> None:
        self.seed = seed
        self.machines: dict[str, MachineModel] = {
            mid: build_machine(mid, kind, seed) for mid, kind in resolve_machines(machines)
        }
        self.time_s = 0.0
        self.steps = 0

    @property
    def machine_ids(self) -> list[str]:
        """Machine ids in unit-id order."""
        return list(self.machines)

    def kind(self, machine_id: str) -> str:
        """The kind ("pump", "press", ...) of a machine."""
        return self.machine(machine_id).kind

    def machine(self, machine_id: str) -> MachineModel:
        """The model of one machine; a clear error names the known ids."""
        try:
            return self.machines[machine_id]
        except KeyError:
            raise KeyError(f"unknown machine {machine_id!r}; this plant has {self.machine_ids}") from None

    def signals(self, machine_id: str) -> list[tuple[str, str]]:
        """(signal name, unit) of one machine in register-map order."""
        return [(s.name, s.unit) for s in self.machine(machine_id).signal_specs]

    def readings(self) -> dict[str, Reading]:
        """The current reading of every machine (before the first step: the initial values)."""
        return {mid: _reading(model) for mid, model in self.machines.items()}

    def step(self, dt: float) -> dict[str, Reading]:
        """Advance every machine by ``dt`` simulated seconds and return the new readings."""
        for model in self.machines.values():
            model.step(dt)
        self.time_s += dt
        self.steps += 1
        return self.readings()


def _reading(model: MachineModel) -> Reading:
    return Reading(model.machine_id, model.values, model.state, model.parts_count)
