"""A plant: the machines of one simulation, stepped together on one simulated clock.

Pure like the models it holds: ``step(dt)`` applies the faults, the scheduled operating
modes and the shift calendar, advances every machine and returns their readings (measured values, i.e. after sensor
faults). The servers serve these readings; ``edge-sim record`` writes them to CSV.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from simulators.errors import SimulatorError, UnknownMachineError
from simulators.faults import Fault, FaultBook
from simulators.physics import MachineModel, MachineState, build_machine
from simulators.physics.registry import MachinesArg, resolve_machines
from simulators.shifts import ShiftCalendar


@dataclass(frozen=True, slots=True)
class Reading:
    """One machine after one step: signal values in register-map order, state, parts counter."""

    machine_id: str
    values: dict[str, float]
    state: MachineState
    parts_count: int


MAX_EXTRA_TAGS = 90
"""Auxiliary tags per machine at most: the holding map's int16 copies end below address 100."""

STATUS_SIGNALS = ("state_code", "parts_count")
"""Status values recorded in ``served()`` next to the signals (as floats; exact below 2**53)."""


def status_values(reading: Reading) -> dict[str, float]:
    """A reading's status as served on both protocols: state code, parts counter (uint32)."""
    return {"state_code": float(int(reading.state)), "parts_count": float(reading.parts_count & 0xFFFFFFFF)}


@dataclass(frozen=True, slots=True)
class ModeWindow:
    """A scheduled operating mode: ``state`` from ``start_s`` until ``end_s`` (None: for ever)."""

    machine_id: str
    state: MachineState
    start_s: float
    end_s: float | None = None

    def covers(self, t: float) -> bool:
        """Whether the window holds at simulated time ``t``."""
        return self.start_s <= t and (self.end_s is None or t < self.end_s)


@dataclass(frozen=True, slots=True)
class LoadWindow:
    """A scheduled load (0-1 of rated) from ``start_s`` until ``end_s`` (None: for ever)."""

    machine_id: str
    load: float
    start_s: float
    end_s: float | None = None

    def covers(self, t: float) -> bool:
        """Whether the window holds at simulated time ``t``."""
        return self.start_s <= t and (self.end_s is None or t < self.end_s)


class Plant:
    """The machines of a simulation, built from a seed, stepped on one simulated clock."""

    def __init__(self, seed: int = 1, machines: MachinesArg = None, extra_tags: int = 0) -> None:
        if not 0 <= extra_tags <= MAX_EXTRA_TAGS:
            raise SimulatorError(
                f"extra_tags must be 0 to {MAX_EXTRA_TAGS} (the Modbus map has room for 100 signals), got {extra_tags}"
            )
        self.seed = seed
        self.extra_tags = extra_tags
        self.machines: dict[str, MachineModel] = {
            mid: build_machine(mid, kind, seed) for mid, kind in resolve_machines(machines)
        }
        self.faults = FaultBook(seed, {mid: (m.kind, m.signal_names()) for mid, m in self.machines.items()})
        self.modes: list[ModeWindow] = []
        self.loads: list[LoadWindow] = []
        self.shifts: ShiftCalendar | None = None
        self.time_s = 0.0
        self.steps = 0
        self._measured: dict[str, dict[str, float]] = {
            mid: {**m.values, **self._aux_values(index, 0.0)} for index, (mid, m) in enumerate(self.machines.items())
        }

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
            raise UnknownMachineError(machine_id, self.machine_ids) from None

    def signals(self, machine_id: str) -> list[tuple[str, str]]:
        """(signal name, unit) of one machine in register-map order."""
        return [(s.name, s.unit) for s in self.machine(machine_id).signal_specs] + [
            (name, "") for name in self.aux_names()
        ]

    def aux_names(self) -> list[str]:
        """Names of the auxiliary tags every machine carries (``extra_tags``): aux_01, aux_02, ..."""
        return [f"aux_{k:02d}" for k in range(1, self.extra_tags + 1)]

    def _aux_values(self, machine_index: int, t: float) -> dict[str, float]:
        """Auxiliary tags for load tests: slow sines, each its own period and phase, no physics.

        They stand for the setpoints, counters and spare sensors a real PLC exposes next to the
        signals that matter, so a benchmark can serve 50 tags a machine.
        """
        return {
            name: round(50.0 + 10.0 * math.sin(t / (30.0 + 7.0 * k) + machine_index + k), 3)
            for k, name in enumerate(self.aux_names(), start=1)
        }

    def readings(self) -> dict[str, Reading]:
        """The current reading of every machine (before the first step: the initial values)."""
        return {
            mid: Reading(mid, dict(self._measured[mid]), model.state, model.parts_count)
            for mid, model in self.machines.items()
        }

    def step(self, dt: float) -> dict[str, Reading]:
        """Advance every machine by ``dt`` simulated seconds and return the new readings."""
        t = self.time_s + dt
        for index, (mid, model) in enumerate(self.machines.items()):
            self._apply_modes(mid, model, t)
            model.modifiers = self.faults.modifiers(mid, model.kind, t)
            raw = model.step(dt)
            self._measured[mid] = self.faults.apply_sensors(mid, raw, t)
            if self.extra_tags:
                self._measured[mid].update(self._aux_values(index, t))
        self.time_s = t
        self.steps += 1
        return self.readings()

    def _apply_modes(self, machine_id: str, model: MachineModel, t: float) -> None:
        """Mode windows first, then the shift calendar (off outside shifts), else the rhythm."""
        modes = [w for w in self.modes if w.machine_id == machine_id and w.covers(t)]
        if modes:
            model.scheduled_state = modes[-1].state
        elif self.shifts is not None and self.shifts.applies_to(machine_id) and not self.shifts.working(t):
            model.scheduled_state = MachineState.OFF
        else:
            model.scheduled_state = None
        loads = [w for w in self.loads if w.machine_id == machine_id and w.covers(t)]
        model.scheduled_load = loads[-1].load if loads else None

    def present_faults(self, machine_id: str) -> list[Fault]:
        """Faults present on a machine now (ground truth of the last step)."""
        return self.faults.present(machine_id, self.time_s)
