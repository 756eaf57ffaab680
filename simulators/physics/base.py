"""What every simulated machine shares: signals, operating states, load and the step contract.

A model is pure: ``step(dt)`` advances simulated time by ``dt`` seconds and updates the values,
using only its own seeded noise. No clock, no I/O, no asyncio, so the servers can serve it live
and ``edge-sim record`` can run it flat out without a server. Two models built with the same
seed and machine id give identical values after the same sequence of steps.
"""

from __future__ import annotations

import math
from abc import ABC, abstractmethod
from dataclasses import dataclass, field
from enum import IntEnum
from typing import ClassVar

from simulators.physics.noise import Noise, machine_seed


class MachineState(IntEnum):
    """Operating state; the integer is the Modbus state code (holding register 102)."""

    OFF = 0
    IDLE = 1
    RUNNING = 2
    SETUP = 3


@dataclass(frozen=True, slots=True)
class SignalSpec:
    """One measured signal: its name (node id suffix, CSV column), SI-ish unit and meaning."""

    name: str
    unit: str
    description: str


@dataclass(slots=True)
class Modifiers:
    """Physical effects of active faults, read by the physics of a step.

    Neutral values mean a healthy machine. Faults (``simulators.faults``) set these before each
    step, so a fault acts through the physics: a failing cooler raises temperature through the
    same thermal lag as a heavy load does, and only on the machines that have that path.
    """

    vibration_add: float = 0.0
    """Extra vibration velocity, mm/s RMS (bearing wear, imbalance, misalignment)."""
    vibration_noise: float = 0.0
    """Extra broadband vibration noise, mm/s (cavitation, late bearing wear)."""
    friction_add: float = 0.0
    """Extra mechanical load as a fraction of rated power (bearing wear, misalignment)."""
    bearing_heat_k: float = 0.0
    """Extra steady-state bearing temperature rise, K."""
    cooling_factor: float = 1.0
    """Heat removal relative to healthy (0.3 = cooler at 30 %)."""
    flow_factor: float = 1.0
    """Delivered flow relative to healthy (cavitation, clogged filter, leak)."""
    pressure_factor: float = 1.0
    """Delivered pressure relative to healthy (cavitation, leak, clogged filter)."""
    pressure_noise: float = 0.0
    """Extra pressure fluctuation, fraction of the value (cavitation)."""


@dataclass(slots=True)
class Schedule:
    """Automatic production rhythm: long runs, short idles, occasional setups.

    The rhythm keeps its own state, so a scheduled or forced mode overrides it only for its
    window and the machine then returns to wherever the rhythm has got to. Durations are drawn
    from the machine's own noise only when a phase ends, so the rhythm is reproducible for a
    seed. ``off`` is never chosen automatically; a scenario or ``set_mode`` sets it.
    """

    mean_run_s: float = 2400.0
    state: MachineState = MachineState.RUNNING
    remaining_s: float = field(default=-1.0)

    def advance(self, dt: float, noise: Noise) -> MachineState:
        """Return the rhythm's state after ``dt`` seconds, drawing a new phase length on a transition."""
        if self.remaining_s < 0:
            self.remaining_s = self._run_length(noise)
        self.remaining_s -= dt
        if self.remaining_s > 0:
            return self.state
        if self.state is MachineState.RUNNING:
            if noise.uniform() < 0.3:
                self.remaining_s = noise.uniform(300.0, 900.0)
                self.state = MachineState.SETUP
            else:
                self.remaining_s = noise.uniform(60.0, 300.0)
                self.state = MachineState.IDLE
        else:
            self.remaining_s = self._run_length(noise)
            self.state = MachineState.RUNNING
        return self.state

    def _run_length(self, noise: Noise) -> float:
        return 600.0 + noise.uniform() * 2.0 * (self.mean_run_s - 600.0)


def lag(current: float, target: float, dt: float, tau: float) -> float:
    """First-order lag: move ``current`` toward ``target`` with time constant ``tau`` seconds.

    The exact discrete form (not Euler) keeps the response the same whatever the step size.
    """
    return target + (current - target) * math.exp(-dt / tau)


def clamp(value: float, low: float, high: float) -> float:
    """``value`` limited to [low, high]."""
    return low if value < low else high if value > high else value


class MachineModel(ABC):
    """Base of every machine model: seeded noise, operating state, load, parts counter.

    Subclasses declare ``kind`` and ``signal_specs`` and implement ``_advance``, which returns
    the measured value of every signal after one step (noise included, sensor faults not).
    """

    kind: ClassVar[str]
    signal_specs: ClassVar[tuple[SignalSpec, ...]]
    mean_ambient_c: ClassVar[float] = 24.0
    """Hall temperature averaged over a day; ``ambient_c`` swings ±3 K around it."""

    def __init__(self, machine_id: str, seed: int) -> None:
        self.machine_id = machine_id
        self.seed = seed
        self.noise = Noise(machine_seed(seed, machine_id))
        self.time_s = 0.0
        self.steps = 0
        self.state = MachineState.RUNNING
        self.parts_count = 0
        self.demand = 0.7
        """What the plant asks of the machine, wandering on its own (Ornstein-Uhlenbeck)."""
        self.load = self.demand
        """The load the physics uses: a held or scheduled load if any, else ``demand``."""
        self.modifiers = Modifiers()
        self.schedule = Schedule()
        self.forced_state: MachineState | None = None
        """A state held by hand (``Simulation.set_mode``, tests); wins over everything."""
        self.scheduled_state: MachineState | None = None
        """The state of a scenario's mode window, set by the plant; wins over the rhythm."""
        self.forced_load: float | None = None
        """A load held by hand (``Simulation.set_load``, tests); wins over a scheduled one."""
        self.scheduled_load: float | None = None
        """The load of a scenario's load window, set by the plant."""
        self._values: dict[str, float] = self._initial_values()

    @classmethod
    def signal_names(cls) -> tuple[str, ...]:
        """Signal names in register-map order."""
        return tuple(spec.name for spec in cls.signal_specs)

    @property
    def ambient_c(self) -> float:
        """Hall temperature now: a daily swing (coolest 6 h after start, warmest 18 h after).

        Every temperature settles relative to it, so a week of data has the daily rhythm a
        detector must not mistake for a fault.
        """
        return self.mean_ambient_c - 3.0 * math.sin(2.0 * math.pi * self.time_s / 86400.0)

    @property
    def values(self) -> dict[str, float]:
        """Measured values after the last step, keyed by signal name (a copy)."""
        return dict(self._values)

    def step(self, dt: float) -> dict[str, float]:
        """Advance ``dt`` simulated seconds; return the new measured values."""
        if dt <= 0:
            raise ValueError(f"dt must be positive, got {dt}")
        self.time_s += dt
        self.steps += 1
        automatic = self.schedule.advance(dt, self.noise)
        held = self.forced_state if self.forced_state is not None else self.scheduled_state
        self.state = held if held is not None else automatic  # not `or`: OFF is 0, falsy
        self.demand = self._next_demand(dt)  # always advanced, so held loads never shift the noise
        held_load = self.forced_load if self.forced_load is not None else self.scheduled_load
        self.load = held_load if held_load is not None else self.demand
        self._values = self._advance(dt)
        return dict(self._values)

    def _next_demand(self, dt: float) -> float:
        """Demand wanders slowly (Ornstein-Uhlenbeck, 5 min time constant) between 0.2 and 1."""
        decay = math.exp(-dt / 300.0)
        spread = 0.15 * math.sqrt(1.0 - decay * decay)
        return clamp(0.65 + (self.demand - 0.65) * decay + self.noise.normal(spread), 0.2, 1.0)

    @abstractmethod
    def _initial_values(self) -> dict[str, float]:
        """Values before the first step (a machine that has been running at its usual load)."""

    @abstractmethod
    def _advance(self, dt: float) -> dict[str, float]:
        """The physics of one step; returns the measured value of every signal."""
