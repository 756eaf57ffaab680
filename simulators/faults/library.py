"""The fault library: what each fault does, to which machines, through which signals.

Physical faults act through the physics (``Modifiers``): a failing bearing adds vibration and
friction, the friction adds current, the current adds heat, and the heat shows through the same
thermal lag as a heavy load. Sensor faults act on one measured signal only and leave the
machine alone. ``affects`` lists, per machine kind, the signals a fault changes; the rest stay
bit-for-bit as in a healthy run with the same seed (tests check this).

Intensity ``x`` in [0, 1] is severity times the progression (sudden, linear, exponential).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from enum import StrEnum

from simulators.physics import Modifiers

ROTATING = frozenset({"pump", "cnc", "conveyor", "compressor"})
ALL_KINDS = frozenset({"pump", "press", "cnc", "conveyor", "compressor"})


class Progression(StrEnum):
    """How a fault grows from its onset to full severity over its ramp.

    ``intermittent`` comes and goes instead: the time after onset is cut into slots of ``ramp``
    seconds (60 s if none) and each slot is on (full severity) or off with even odds, decided by
    a stable hash, so it is reproducible and draws no random numbers.
    """

    SUDDEN = "sudden"
    LINEAR = "linear"
    EXPONENTIAL = "exponential"
    INTERMITTENT = "intermittent"


Effect = Callable[[Modifiers, float, str], None]
"""Adds a fault's effect at intensity x to the modifiers of a machine of the given kind."""


@dataclass(frozen=True, slots=True)
class FaultKind:
    """One entry of the library."""

    name: str
    description: str
    kinds: frozenset[str]
    affects: dict[str, tuple[str, ...]]
    default_progression: Progression
    default_ramp_s: float
    effect: Effect | None = None
    sensor: bool = False
    """Sensor faults need a ``signal`` and change only that signal."""

    def affected_signals(self, kind: str, signal: str | None = None) -> tuple[str, ...]:
        """The signals this fault changes on a machine of ``kind`` (the one signal for a sensor fault)."""
        if self.sensor:
            return (signal,) if signal else ()
        return self.affects.get(kind, ())


def _bearing_wear(m: Modifiers, x: float, _kind: str) -> None:
    m.vibration_add += 7.0 * x
    m.vibration_noise += 2.0 * x * x
    m.friction_add += 0.06 * x
    m.bearing_heat_k += 30.0 * x


def _imbalance(m: Modifiers, x: float, _kind: str) -> None:
    m.vibration_add += 6.0 * x


def _misalignment(m: Modifiers, x: float, _kind: str) -> None:
    m.vibration_add += 4.0 * x
    m.friction_add += 0.04 * x
    m.bearing_heat_k += 12.0 * x


def _overheating(m: Modifiers, x: float, _kind: str) -> None:
    m.cooling_factor *= 1.0 - 0.5 * x  # full severity: half the cooling, twice the temperature rise


def _cavitation(m: Modifiers, x: float, _kind: str) -> None:
    m.flow_factor *= 1.0 - 0.2 * x
    m.pressure_factor *= 1.0 - 0.15 * x
    m.pressure_noise += 0.05 * x
    m.vibration_noise += 3.0 * x


def _leak(m: Modifiers, x: float, kind: str) -> None:
    if kind == "pump":  # discharge-side leak: the pump runs further out on its curve
        m.pressure_factor *= 1.0 - 0.3 * x
        m.flow_factor *= 1.0 + 0.15 * x
    else:  # press: internal leak past the piston, pressure builds slower and peaks lower
        m.pressure_factor *= 1.0 - 0.2 * x
        m.flow_factor *= 1.0 - 0.4 * x


def _clogged_filter(m: Modifiers, x: float, kind: str) -> None:
    if kind == "pump":  # suction strainer: less flow, onset of cavitation noise
        m.flow_factor *= 1.0 - 0.35 * x
        m.pressure_factor *= 1.0 - 0.1 * x
        m.vibration_noise += 1.0 * x
    else:  # press suction filter: the pump delivers less, presses take longer
        m.flow_factor *= 1.0 - 0.5 * x


_VIBRATION = {"pump": "vibration_rms", "cnc": "vibration", "conveyor": "vibration", "compressor": "vibration"}
_TEMPERATURE = {
    "pump": "motor_temperature",
    "press": "oil_temperature",
    "cnc": "coolant_temperature",
    "conveyor": "winding_temperature",
    "compressor": "winding_temperature",
}
_FRICTION_SIGNALS = {
    "pump": ("vibration_rms", "motor_current", "motor_temperature"),
    "cnc": ("vibration", "spindle_load", "motor_current", "bearing_temperature"),
    "conveyor": ("speed", "vibration", "motor_current", "winding_temperature"),
    "compressor": ("speed", "vibration", "motor_current", "winding_temperature"),
}

FAULT_KINDS: dict[str, FaultKind] = {
    k.name: k
    for k in (
        FaultKind(
            "bearing_wear",
            "rolling bearing wear: vibration and friction grow, then heat; progressive by nature",
            ROTATING,
            _FRICTION_SIGNALS,
            Progression.EXPONENTIAL,
            600.0,
            _bearing_wear,
        ),
        FaultKind(
            "imbalance",
            "rotor imbalance (lost balance weight, deposit): vibration rising with speed, nothing else",
            ROTATING,
            {kind: (signal,) for kind, signal in _VIBRATION.items()},
            Progression.SUDDEN,
            0.0,
            _imbalance,
        ),
        FaultKind(
            "misalignment",
            "shaft misalignment: vibration, some friction and bearing heat",
            ROTATING,
            _FRICTION_SIGNALS,
            Progression.SUDDEN,
            0.0,
            _misalignment,
        ),
        FaultKind(
            "overheating",
            "cooling failure (fan, cooler, chiller): temperature climbs through the thermal lag",
            ALL_KINDS,
            {kind: (signal,) for kind, signal in _TEMPERATURE.items()},
            Progression.LINEAR,
            300.0,
            _overheating,
        ),
        FaultKind(
            "cavitation",
            "pump cavitation (low suction head): flow and pressure drop and fluctuate, vibration noise",
            frozenset({"pump"}),
            {"pump": ("flow", "outlet_pressure", "motor_current", "motor_temperature", "vibration_rms")},
            Progression.SUDDEN,
            0.0,
            _cavitation,
        ),
        FaultKind(
            "leak",
            "hydraulic leak: pump pressure drops (flow up); press pressure builds slower and peaks lower",
            frozenset({"pump", "press"}),
            {
                "pump": ("flow", "outlet_pressure", "motor_current", "motor_temperature", "vibration_rms"),
                "press": ("hydraulic_pressure", "oil_temperature", "motor_current", "cycle_time"),
            },
            Progression.LINEAR,
            600.0,
            _leak,
        ),
        FaultKind(
            "clogged_filter",
            "clogged suction filter: less flow (pump) or slower cycles (press)",
            frozenset({"pump", "press"}),
            {
                "pump": ("flow", "outlet_pressure", "motor_current", "motor_temperature", "vibration_rms"),
                "press": ("hydraulic_pressure", "oil_temperature", "motor_current", "cycle_time"),
            },
            Progression.LINEAR,
            1800.0,
            _clogged_filter,
        ),
        FaultKind(
            "sensor_drift",
            "sensor drift: the reading creeps upward, up to +25 % of its value at onset",
            ALL_KINDS,
            {},
            Progression.LINEAR,
            1800.0,
            sensor=True,
        ),
        FaultKind(
            "stuck_sensor",
            "stuck sensor: the reading freezes at its value at onset",
            ALL_KINDS,
            {},
            Progression.SUDDEN,
            0.0,
            sensor=True,
        ),
        FaultKind(
            "noisy_sensor",
            "noisy, spiking sensor (loose connector, EMI): extra noise and occasional spikes",
            ALL_KINDS,
            {},
            Progression.SUDDEN,
            0.0,
            sensor=True,
        ),
    )
}
