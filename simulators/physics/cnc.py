"""A CNC machining centre's main spindle, running one part program over and over.

The program is a fixed list of operations (tool changes, roughing, finishing, drilling, unload),
so speed and load follow a recognisable ~2 min pattern per part. The cutting load scales with
the part's material (``load``). Cause and effect:

- spindle speed follows the commanded speed with a short acceleration lag;
- spindle load (% of rated torque) is cutting load plus speed-dependent bearing friction;
- motor current follows load at once;
- bearing temperature follows speed and friction (10 min lag), coolant temperature follows the
  cutting power against the chiller (30 min lag);
- vibration grows with speed (residual imbalance) and with cutting (chatter).
"""

from __future__ import annotations

from typing import ClassVar

from simulators.physics.base import MachineModel, MachineState, SignalSpec, lag

PROGRAM: tuple[tuple[str, float, float, float], ...] = (
    ("tool_change", 6.0, 0.0, 0.0),
    ("roughing", 40.0, 8000.0, 0.65),
    ("tool_change", 6.0, 0.0, 0.0),
    ("finishing", 25.0, 12000.0, 0.22),
    ("tool_change", 6.0, 0.0, 0.0),
    ("drilling", 15.0, 3000.0, 0.45),
    ("unload", 12.0, 0.0, 0.0),
)
"""(operation, seconds, commanded rpm, cutting load as a fraction of rated torque at full material)."""
MAX_RPM = 12000.0
BEARING_TAU_S = 600.0
COOLANT_TAU_S = 1800.0


class CncSpindle(MachineModel):
    """CNC spindle: speed, load, current, vibration, bearing and coolant temperature."""

    kind: ClassVar[str] = "cnc"
    signal_specs: ClassVar[tuple[SignalSpec, ...]] = (
        SignalSpec("spindle_speed", "rpm", "measured spindle speed"),
        SignalSpec("spindle_load", "%", "spindle torque as a percentage of rated torque"),
        SignalSpec("motor_current", "A", "spindle drive motor current (RMS)"),
        SignalSpec("vibration", "mm/s", "spindle housing vibration velocity (RMS)"),
        SignalSpec("bearing_temperature", "°C", "front spindle bearing temperature"),
        SignalSpec("coolant_temperature", "°C", "coolant temperature at the tank"),
    )

    def __init__(self, machine_id: str, seed: int) -> None:
        self.op_index = 0
        self.op_elapsed_s = 0.0
        self.rpm = 0.0
        self.bearing_temp_c = 38.0
        self.coolant_temp_c = 24.0
        super().__init__(machine_id, seed)

    def _operation(self) -> tuple[str, float, float, float]:
        return PROGRAM[self.op_index]

    def _advance_program(self, dt: float) -> None:
        if self.state is not MachineState.RUNNING:
            return
        self.op_elapsed_s += dt
        while self.op_elapsed_s >= PROGRAM[self.op_index][1]:
            self.op_elapsed_s -= PROGRAM[self.op_index][1]
            self.op_index = (self.op_index + 1) % len(PROGRAM)
            if self.op_index == 0:
                self.parts_count += 1

    def _initial_values(self) -> dict[str, float]:
        return {
            "spindle_speed": 0.0,
            "spindle_load": 0.0,
            "motor_current": 3.0,
            "vibration": 0.3,
            "bearing_temperature": self.bearing_temp_c,
            "coolant_temperature": self.coolant_temp_c,
        }

    def _advance(self, dt: float) -> dict[str, float]:
        n = self.noise
        m = self.modifiers
        self._advance_program(dt)
        _, _, command_rpm, cut = self._operation()
        if self.state is not MachineState.RUNNING:
            command_rpm, cut = (1500.0, 0.0) if self.state is MachineState.SETUP else (0.0, 0.0)
        self.rpm = lag(self.rpm, command_rpm, dt, 0.8)
        speed = self.rpm / MAX_RPM
        cutting = cut * (0.6 + 0.6 * self.load) if self.rpm > 0.9 * command_rpm > 0 else 0.0
        friction = 0.06 * speed + m.friction_add * (speed > 0.01)
        load_pct = 100.0 * (cutting + friction)
        drive_on = self.state is not MachineState.OFF
        current = (3.0 + 0.32 * load_pct + 6.0 * speed) if drive_on else 0.0
        bearing_target = self.ambient_c + 10.0 + 25.0 * speed**1.5 + 8.0 * cutting + m.bearing_heat_k * speed
        self.bearing_temp_c = lag(self.bearing_temp_c, bearing_target, dt, BEARING_TAU_S)
        coolant_target = 20.0 + (6.0 * cutting * speed + 1.0) / max(m.cooling_factor, 0.05)
        self.coolant_temp_c = lag(self.coolant_temp_c, coolant_target, dt, COOLANT_TAU_S)
        vibration = 0.3 + 1.6 * speed**2 + 1.2 * cutting + m.vibration_add * speed
        vibration += abs(n.normal(m.vibration_noise)) * speed + abs(n.normal(0.25)) * cutting
        return {
            "spindle_speed": max(0.0, self.rpm + n.normal(3.0) * (self.rpm > 1.0)),
            "spindle_load": max(0.0, load_pct + n.normal(0.8) * (self.rpm > 1.0)),
            "motor_current": max(0.0, current + n.normal(0.15) * drive_on),
            "vibration": max(0.02, vibration + n.normal(0.03)),
            "bearing_temperature": self.bearing_temp_c + n.normal(0.05),
            "coolant_temperature": self.coolant_temp_c + n.normal(0.04),
        }
