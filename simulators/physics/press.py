"""A hydraulic press with a fixed-displacement pump: cycle after cycle, one part per cycle.

A cycle is five phases: approach, press (pressure ramps to the set point, which follows the
part's ``load``), hold, return, and unload/load of the part. The pump motor current follows the
working pressure at once; the oil heats with the pressure work and cools through the oil cooler
with a 20 min time constant, so oil temperature lags. ``cycle_time`` is the duration of the last
completed cycle (a step signal that changes once per part).
"""

from __future__ import annotations

from typing import ClassVar

from simulators.physics.base import MachineModel, MachineState, SignalSpec, lag

PHASES: tuple[tuple[str, float], ...] = (
    ("approach", 1.5),
    ("press", 2.0),
    ("hold", 1.5),
    ("return", 1.5),
    ("unload", 1.5),
)
"""Phase names and nominal durations in seconds (8 s per part)."""
MAX_PRESSURE_BAR = 210.0
STANDBY_BAR = 8.0
OIL_TAU_S = 1200.0


class HydraulicPress(MachineModel):
    """Hydraulic press: pressure, oil temperature, motor current, cycle time."""

    kind: ClassVar[str] = "press"
    signal_specs: ClassVar[tuple[SignalSpec, ...]] = (
        SignalSpec("hydraulic_pressure", "bar", "main cylinder pressure"),
        SignalSpec("oil_temperature", "°C", "hydraulic oil temperature in the tank"),
        SignalSpec("motor_current", "A", "hydraulic pump motor current (RMS)"),
        SignalSpec("cycle_time", "s", "duration of the last completed press cycle"),
    )

    def __init__(self, machine_id: str, seed: int) -> None:
        self.phase_index = 0
        self.phase_elapsed_s = 0.0
        self.phase_length_s = PHASES[0][1]
        self.cycle_elapsed_s = 0.0
        self.last_cycle_s = sum(length for _, length in PHASES)
        self.pressure_bar = STANDBY_BAR
        self.oil_temp_c = 43.0
        super().__init__(machine_id, seed)

    def _setpoint(self) -> float:
        return (120.0 + 80.0 * self.load) * self.modifiers.pressure_factor

    def _target_pressure(self) -> float:
        if self.state is not MachineState.RUNNING:
            return STANDBY_BAR if self.state is not MachineState.OFF else 0.0
        name = PHASES[self.phase_index][0]
        setpoint = self._setpoint()
        if name == "approach":
            return 25.0
        if name == "press":
            return STANDBY_BAR + (setpoint - STANDBY_BAR) * min(1.0, self.phase_elapsed_s / self.phase_length_s)
        if name == "hold":
            return setpoint
        if name == "return":
            return 35.0
        return STANDBY_BAR

    def _advance_cycle(self, dt: float) -> None:
        if self.state is not MachineState.RUNNING:
            return
        self.phase_elapsed_s += dt
        self.cycle_elapsed_s += dt
        while self.phase_elapsed_s >= self.phase_length_s:
            self.phase_elapsed_s -= self.phase_length_s
            self.phase_index = (self.phase_index + 1) % len(PHASES)
            if self.phase_index == 0:
                self.parts_count += 1
                self.last_cycle_s = self.cycle_elapsed_s - self.phase_elapsed_s
                self.cycle_elapsed_s = self.phase_elapsed_s
            nominal = PHASES[self.phase_index][1]
            # A leak or a clogged suction filter makes pressure build slower: longer press phase.
            slow = 1.0 / max(self.modifiers.flow_factor, 0.2) if PHASES[self.phase_index][0] == "press" else 1.0
            self.phase_length_s = nominal * slow * (1.0 + self.noise.normal(0.03))

    def _initial_values(self) -> dict[str, float]:
        return {
            "hydraulic_pressure": STANDBY_BAR,
            "oil_temperature": self.oil_temp_c,
            "motor_current": 8.0,
            "cycle_time": self.last_cycle_s,
        }

    def _advance(self, dt: float) -> dict[str, float]:
        n = self.noise
        m = self.modifiers
        self._advance_cycle(dt)
        self.pressure_bar = lag(self.pressure_bar, self._target_pressure(), dt, 0.25)
        motor_on = self.state is not MachineState.OFF
        current = (8.0 + 0.11 * self.pressure_bar) * (1.0 + m.friction_add) if motor_on else 0.0
        heat_k = (10.0 + 0.12 * self.pressure_bar * motor_on) / max(m.cooling_factor, 0.05)
        self.oil_temp_c = lag(self.oil_temp_c, self.ambient_c + heat_k, dt, OIL_TAU_S)
        pressure = self.pressure_bar * (1.0 + n.normal(m.pressure_noise))
        return {
            "hydraulic_pressure": max(0.0, pressure + n.normal(0.4)),
            "oil_temperature": self.oil_temp_c + n.normal(0.05),
            "motor_current": max(0.0, current + n.normal(0.1) * motor_on),
            "cycle_time": self.last_cycle_s,
        }
