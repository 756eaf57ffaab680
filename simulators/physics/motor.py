"""A 7.5 kW four-pole induction motor driving a belt conveyor or a screw compressor.

Both share the motor physics; only what loads the motor differs:

- conveyor: the load follows how many parts are on the belt (a fast-wandering demand), and the
  parts counter counts parts conveyed;
- compressor: load/unload regulation (full load until the receiver reaches cut-out pressure,
  then about 30 % while unloaded), and the parts counter counts load cycles.

Slip grows with load, so speed dips under load; current follows load; the winding heats with
current² through a 20 min lag; vibration grows with speed and with faults.
"""

from __future__ import annotations

from typing import ClassVar

from simulators.physics.base import MachineModel, MachineState, SignalSpec, clamp, lag

SYNC_RPM = 1500.0
RATED_SLIP_RPM = 30.0
NO_LOAD_A = 5.0
RATED_A = 15.0
WINDING_TAU_S = 1200.0
RISE_AT_RATED_K = 60.0


class InductionMotor(MachineModel):
    """Motor of a conveyor or compressor: speed, current, vibration, winding temperature."""

    kind: ClassVar[str] = "motor"
    signal_specs: ClassVar[tuple[SignalSpec, ...]] = (
        SignalSpec("speed", "rpm", "motor shaft speed"),
        SignalSpec("motor_current", "A", "motor phase current (RMS)"),
        SignalSpec("vibration", "mm/s", "motor drive-end vibration velocity (RMS)"),
        SignalSpec("winding_temperature", "°C", "stator winding temperature (PT100)"),
    )

    def __init__(self, machine_id: str, seed: int) -> None:
        self.rpm = SYNC_RPM - RATED_SLIP_RPM * 0.6
        self.shaft_load = 0.6
        self.winding_temp_c = self.mean_ambient_c + RISE_AT_RATED_K * 0.5
        self.production = 0.0
        super().__init__(machine_id, seed)

    def _driven_load(self, dt: float) -> float:
        """The fraction of rated torque the driven machine asks for; subclasses say what loads it."""
        del dt
        return self.load

    def _initial_values(self) -> dict[str, float]:
        return {
            "speed": self.rpm,
            "motor_current": NO_LOAD_A + (RATED_A - NO_LOAD_A) * self.shaft_load,
            "vibration": 1.0,
            "winding_temperature": self.winding_temp_c,
        }

    def _advance(self, dt: float) -> dict[str, float]:
        n = self.noise
        m = self.modifiers
        running = self.state is MachineState.RUNNING
        demand = self._driven_load(dt) if running else 0.0
        self.shaft_load = clamp(demand + m.friction_add, 0.0, 1.6) if running else 0.0
        target_rpm = SYNC_RPM - RATED_SLIP_RPM * self.shaft_load if running else 0.0
        self.rpm = lag(self.rpm, target_rpm, dt, 1.5)
        if self.rpm < 1.0 and not running:
            self.rpm = 0.0
        speed = self.rpm / SYNC_RPM
        current = (NO_LOAD_A * speed + (RATED_A - NO_LOAD_A) * self.shaft_load) if self.rpm > 0 else 0.0
        rise = RISE_AT_RATED_K * (current / RATED_A) ** 2 / max(m.cooling_factor, 0.05)
        self.winding_temp_c = lag(
            self.winding_temp_c, self.ambient_c + rise + m.bearing_heat_k * 0.3, dt, WINDING_TAU_S
        )
        vibration = speed * (0.9 + 0.3 * self.shaft_load) + m.vibration_add * speed
        vibration += abs(n.normal(m.vibration_noise)) * speed
        return {
            "speed": max(0.0, self.rpm + n.normal(0.8) * (self.rpm > 0)),
            "motor_current": max(0.0, current + n.normal(0.07) * (self.rpm > 0)),
            "vibration": max(0.02, vibration + n.normal(0.03)),
            "winding_temperature": self.winding_temp_c + n.normal(0.05),
        }


class ConveyorMotor(InductionMotor):
    """Belt conveyor: load wanders with the parts on the belt; the counter counts parts conveyed."""

    kind: ClassVar[str] = "conveyor"

    def _driven_load(self, dt: float) -> float:
        belt = clamp(0.35 + 0.5 * self.load + self.noise.normal(0.03), 0.2, 1.0)
        self.production += belt * dt / 4.0  # one part every ~4 s at full belt
        self.parts_count = int(self.production)
        return belt


class CompressorMotor(InductionMotor):
    """Screw compressor: load/unload cycles; demand (``load``) sets the loaded fraction of time."""

    kind: ClassVar[str] = "compressor"

    def __init__(self, machine_id: str, seed: int) -> None:
        self.receiver_bar = 7.0
        self.loaded = True
        super().__init__(machine_id, seed)

    def _driven_load(self, dt: float) -> float:
        # Receiver pressure: filled while loaded, drained by the plant's air demand.
        fill = 0.02 if self.loaded else 0.0
        self.receiver_bar += (fill - 0.02 * self.load) * dt
        if self.loaded and self.receiver_bar >= 7.5:
            self.loaded = False
        elif not self.loaded and self.receiver_bar <= 6.5:
            self.loaded = True
            self.parts_count += 1
        self.receiver_bar = clamp(self.receiver_bar, 6.0, 8.0)
        return 0.95 if self.loaded else 0.3
