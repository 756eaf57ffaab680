"""A centrifugal pump driven by a 400 V induction motor (about 11 kW rated).

Cause and effect, each a small formula you can check by hand:

- demand (``load``, the downstream valve opening) and speed set the flow;
- the pump curve sets the outlet pressure: shut-off head minus a loss that grows with flow²;
- shaft power rises with flow (radial impeller), the motor current with shaft power;
- the motor heats with current² and cools toward ambient with a 15 min time constant, so
  temperature lags current;
- vibration grows with speed and with running away from the best-efficiency flow.
"""

from __future__ import annotations

import math
from typing import ClassVar

from simulators.physics.base import MachineModel, MachineState, SignalSpec, lag

RATED_FLOW_M3H = 60.0
SHUTOFF_BAR = 6.0
RATED_POWER_KW = 11.0
NO_LOAD_CURRENT_A = 6.5
AMPS_PER_KW = 1.0 / (math.sqrt(3) * 0.400 * 0.85 * 0.92)
THERMAL_TAU_S = 900.0
RISE_AT_RATED_K = 45.0
RATED_CURRENT_A = NO_LOAD_CURRENT_A + RATED_POWER_KW * AMPS_PER_KW


class CentrifugalPump(MachineModel):
    """Centrifugal pump: flow, pressure, current, motor temperature, vibration.

    Its ``parts_count`` counts whole cubic metres delivered, the pump's unit of production.
    """

    kind: ClassVar[str] = "pump"
    signal_specs: ClassVar[tuple[SignalSpec, ...]] = (
        SignalSpec("flow", "m3/h", "delivered volume flow"),
        SignalSpec("outlet_pressure", "bar", "discharge pressure (gauge)"),
        SignalSpec("motor_current", "A", "motor phase current (RMS)"),
        SignalSpec("motor_temperature", "°C", "motor stator temperature"),
        SignalSpec("vibration_rms", "mm/s", "bearing housing vibration velocity (RMS, 10-1000 Hz)"),
    )

    def __init__(self, machine_id: str, seed: int) -> None:
        self.speed = 1.0
        self.motor_temp_c = 0.0
        self.volume_m3 = 0.0
        super().__init__(machine_id, seed)
        self.motor_temp_c = self._steady_temperature(self._current(self._flow(self.load)))

    def _flow(self, demand: float) -> float:
        return RATED_FLOW_M3H * self.speed * math.sqrt(demand) * self.modifiers.flow_factor

    def _pressure(self, flow: float) -> float:
        head = SHUTOFF_BAR * self.speed**2 - (SHUTOFF_BAR - 4.0) * (flow / RATED_FLOW_M3H) ** 2
        return max(0.0, head * self.modifiers.pressure_factor)

    def _shaft_kw(self, flow: float) -> float:
        hydraulic = self.speed**3 * RATED_POWER_KW * (0.35 + 0.65 * flow / RATED_FLOW_M3H)
        return hydraulic + RATED_POWER_KW * self.modifiers.friction_add * self.speed

    def _current(self, flow: float) -> float:
        if self.speed < 0.01:
            return 0.0
        return NO_LOAD_CURRENT_A * self.speed + self._shaft_kw(flow) * AMPS_PER_KW

    def _steady_temperature(self, current: float) -> float:
        rise = RISE_AT_RATED_K * (current / RATED_CURRENT_A) ** 2 / max(self.modifiers.cooling_factor, 0.05)
        return self.ambient_c + rise

    def _initial_values(self) -> dict[str, float]:
        flow = self._flow(self.load)
        current = self._current(flow)
        return {
            "flow": flow,
            "outlet_pressure": self._pressure(flow),
            "motor_current": current,
            "motor_temperature": self._steady_temperature(current),
            "vibration_rms": 1.4,
        }

    def _advance(self, dt: float) -> dict[str, float]:
        n = self.noise
        m = self.modifiers
        target_speed = 1.0 if self.state is MachineState.RUNNING else 0.0
        self.speed = lag(self.speed, target_speed, dt, 2.0)
        if self.speed < 1e-3:
            self.speed = 0.0
        flow = self._flow(self.load)
        pressure = self._pressure(flow) * (1.0 + n.normal(m.pressure_noise))
        current = self._current(flow)
        self.motor_temp_c = lag(self.motor_temp_c, self._steady_temperature(current), dt, THERMAL_TAU_S)
        off_design = abs(flow - 0.8 * RATED_FLOW_M3H * self.speed) / RATED_FLOW_M3H
        vibration = self.speed * (1.2 + 0.8 * off_design) + m.vibration_add * self.speed
        vibration += abs(n.normal(m.vibration_noise)) * self.speed
        running = self.speed > 0.0
        # A pump makes no parts: its parts counter counts whole cubic metres delivered.
        self.volume_m3 += flow * dt / 3600.0
        self.parts_count = int(self.volume_m3)
        return {
            "flow": max(0.0, flow + n.normal(0.3) * running),
            "outlet_pressure": max(0.0, pressure + n.normal(0.02)),
            "motor_current": max(0.0, current + n.normal(0.08) * running),
            "motor_temperature": self.motor_temp_c + n.normal(0.05),
            "vibration_rms": max(0.02, vibration + n.normal(0.04)),
        }
