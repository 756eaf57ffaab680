"""Active and scheduled faults of a plant, their effects each step, and the ground truth.

The book is pure and seeded like the physics: sensor-fault randomness comes from a stream of
its own per machine, so injecting a fault never shifts the noise of the healthy signals.
Times are simulated seconds since the plant started. A fault is *present* (ground truth) from
``start_s`` until ``end_s`` (exclusive; None = until the end), whatever its intensity.
"""

from __future__ import annotations

import math
import zlib
from dataclasses import asdict, dataclass, field

from simulators.errors import SimulatorError, UnknownMachineError
from simulators.faults.library import FAULT_KINDS, Progression
from simulators.physics import Modifiers
from simulators.physics.noise import Noise, machine_seed

_EXP_K = 4.0
_INTERMITTENT_SLOT_S = 60.0
_SPAN_FLOOR = 1.0


class FaultOverlapError(SimulatorError):
    """A new fault overlaps one of the same exclusive group; ``existing`` is the one in the way."""

    def __init__(self, new: Fault, existing: Fault) -> None:
        self.new = new
        self.existing = existing
        on = f" on {existing.signal}" if existing.signal else ""
        super().__init__(
            f"{new.machine_id}: {new.fault!r} overlaps fault #{existing.fault_id} ({existing.fault}{on}, "
            f"from {existing.start_s:g} s). Fix: clear it first or schedule this one after it ends"
        )


@dataclass(slots=True)
class Fault:
    """One fault on one machine: what, how strong, when, and (sensor faults) on which signal.

    ``start_ns``/``end_ns`` are the wall-clock timestamps of the first update with the fault
    present / absent, filled in by a live ``Simulation`` (None in offline recordings).
    """

    fault_id: int
    machine_id: str
    fault: str
    severity: float
    start_s: float
    progression: Progression
    ramp_s: float
    end_s: float | None = None
    signal: str | None = None
    start_ns: int | None = None
    end_ns: int | None = None
    _anchor: float | None = field(default=None, repr=False, compare=False)

    def present(self, t: float) -> bool:
        """Whether the fault exists at simulated time ``t`` (the ground-truth label)."""
        return self.start_s <= t and (self.end_s is None or t < self.end_s)

    def intensity(self, t: float) -> float:
        """Severity times progression at ``t``; 0 when not present."""
        if not self.present(t):
            return 0.0
        if self.progression is Progression.INTERMITTENT:
            slot = int((t - self.start_s) // (self.ramp_s if self.ramp_s > 0 else _INTERMITTENT_SLOT_S))
            key = f"{self.machine_id}|{self.fault}|{self.signal}|{self.start_s!r}|{slot}".encode()
            return self.severity if zlib.crc32(key) & 1 else 0.0
        if self.progression is Progression.SUDDEN or self.ramp_s <= 0:
            return self.severity
        u = min(1.0, (t - self.start_s) / self.ramp_s)
        if self.progression is Progression.LINEAR:
            return self.severity * u
        return self.severity * math.expm1(_EXP_K * u) / math.expm1(_EXP_K)

    def to_dict(self) -> dict[str, object]:
        """Ground-truth record as plain data."""
        data = asdict(self)
        data.pop("_anchor")
        data["progression"] = str(self.progression)
        return data


def fault_problems(
    kind: str,
    signals: tuple[str, ...],
    fault: str,
    *,
    severity: float,
    signal: str | None,
    ramp_s: float | None,
    duration_s: float | None,
) -> list[tuple[str, str]]:
    """Everything wrong with a fault request, as (field, problem with its fix); empty if fine.

    Shared by the Python API and the scenario loader so both reject the same things alike.
    """
    spec = FAULT_KINDS.get(fault)
    if spec is None:
        return [("fault", f"unknown fault {fault!r}. Fix: use one of {sorted(FAULT_KINDS)}")]
    problems: list[tuple[str, str]] = []
    if kind not in spec.kinds:
        problems.append(
            ("fault", f"{fault!r} does not apply to a {kind}. Fix: use it on {sorted(spec.kinds)} machines")
        )
    if spec.sensor and signal is None:
        problems.append(("signal", f"{fault!r} is a sensor fault and needs a signal. Fix: add one of {list(signals)}"))
    if signal is not None and signal not in signals:
        problems.append(("signal", f"this {kind} has no signal {signal!r}. Fix: use one of {list(signals)}"))
    if signal is not None and not spec.sensor:
        problems.append(("signal", f"{fault!r} acts on the machine, not on one signal. Fix: remove signal"))
    if not (isinstance(severity, int | float) and 0.0 < severity <= 1.0):
        problems.append(("severity", f"severity must be in (0, 1], got {severity!r}. Fix: e.g. severity: 0.8"))
    if ramp_s is not None and not (math.isfinite(ramp_s) and ramp_s >= 0):
        problems.append(("ramp", f"ramp must not be negative, got {ramp_s!r} s. Fix: e.g. ramp: 2h"))
    if duration_s is not None and not (math.isfinite(duration_s) and duration_s > 0):
        problems.append(("duration", f"duration must be positive, got {duration_s!r} s. Fix: e.g. duration: 6h"))
    return problems


def exclusive_group(fault: Fault) -> tuple[str, str]:
    """Faults in the same group may not overlap in time: same fault on a machine, or one sensor."""
    if fault.signal is not None:
        return (fault.machine_id, f"sensor:{fault.signal}")
    return (fault.machine_id, fault.fault)


class FaultBook:
    """All faults of one plant (past, present, scheduled)."""

    def __init__(self, seed: int, machines: dict[str, tuple[str, tuple[str, ...]]]) -> None:
        """``machines``: id -> (kind, signal names)."""
        self._machines = machines
        self._noise = {mid: Noise([*machine_seed(seed, mid), 0xFA17]) for mid in machines}
        self.faults: list[Fault] = []
        self._next_id = 1

    def add(
        self,
        machine_id: str,
        fault: str,
        *,
        severity: float = 1.0,
        start_s: float,
        progression: Progression | str | None = None,
        ramp_s: float | None = None,
        duration_s: float | None = None,
        signal: str | None = None,
    ) -> Fault:
        """Schedule a fault; raises ``SimulatorError`` (nothing added) naming the problem and the fix."""
        if machine_id not in self._machines:
            raise UnknownMachineError(machine_id, list(self._machines))
        kind, signals = self._machines[machine_id]
        problems = fault_problems(
            kind, signals, fault, severity=severity, signal=signal, ramp_s=ramp_s, duration_s=duration_s
        )
        try:
            chosen = Progression(progression) if progression is not None else None
        except ValueError:
            problems.append(
                ("progression", f"unknown progression {progression!r}. Fix: use one of {list(Progression)}")
            )
            chosen = None
        if problems:
            raise SimulatorError(f"{machine_id}: " + "; ".join(f"{key}: {text}" for key, text in problems))
        spec = FAULT_KINDS[fault]
        new = Fault(
            fault_id=self._next_id,
            machine_id=machine_id,
            fault=fault,
            severity=float(severity),
            start_s=float(start_s),
            progression=chosen or spec.default_progression,
            ramp_s=float(spec.default_ramp_s if ramp_s is None else ramp_s),
            end_s=None if duration_s is None else start_s + duration_s,
            signal=signal,
        )
        clash = self.overlapping(new)
        if clash is not None:
            raise FaultOverlapError(new, clash)
        self._next_id += 1
        self.faults.append(new)
        return new

    def overlapping(self, candidate: Fault) -> Fault | None:
        """An existing fault of the same exclusive group whose time span overlaps ``candidate``'s."""
        group = exclusive_group(candidate)
        for other in self.faults:
            if exclusive_group(other) != group:
                continue
            other_end = math.inf if other.end_s is None else other.end_s
            new_end = math.inf if candidate.end_s is None else candidate.end_s
            if candidate.start_s < other_end and other.start_s < new_end:
                return other
        return None

    def clear(self, machine_id: str, fault: str | None, signal: str | None, at_s: float) -> list[Fault]:
        """End the matching present or scheduled faults at ``at_s``; returns those changed."""
        changed = []
        for f in list(self.faults):
            if f.machine_id != machine_id or (fault is not None and f.fault != fault):
                continue
            if signal is not None and f.signal != signal:
                continue
            if f.end_s is not None and f.end_s <= at_s:
                continue
            if f.start_s >= at_s:
                self.faults.remove(f)  # never started: drop it from the truth entirely
            else:
                f.end_s = at_s
            changed.append(f)
        return changed

    def present(self, machine_id: str, t: float) -> list[Fault]:
        """Faults of one machine present at ``t`` (the ground truth at that instant)."""
        return [f for f in self.faults if f.machine_id == machine_id and f.present(t)]

    def modifiers(self, machine_id: str, kind: str, t: float) -> Modifiers:
        """The physical effects on one machine at ``t`` (neutral if healthy)."""
        mods = Modifiers()
        for f in self.faults:
            if f.machine_id == machine_id and f.signal is None:
                effect = FAULT_KINDS[f.fault].effect
                x = f.intensity(t)
                if effect is not None and x > 0:
                    effect(mods, x, kind)
        return mods

    def apply_sensors(self, machine_id: str, values: dict[str, float], t: float) -> dict[str, float]:
        """Measured values after sensor faults at ``t`` (a new dict; untouched signals unchanged)."""
        sensor_faults = [f for f in self.faults if f.machine_id == machine_id and f.signal is not None]
        if not sensor_faults:
            return values
        out = dict(values)
        for f in sensor_faults:
            assert f.signal is not None
            if not f.present(t):
                f._anchor = None
                continue
            if f._anchor is None:
                f._anchor = out[f.signal]
            out[f.signal] = self._sensor_value(f, out[f.signal], f.intensity(t))
        return out

    def _sensor_value(self, f: Fault, value: float, x: float) -> float:
        anchor = f._anchor if f._anchor is not None else value
        span = max(abs(anchor), _SPAN_FLOOR)
        if f.fault == "stuck_sensor":
            return anchor
        if f.fault == "sensor_drift":
            return value + 0.25 * span * x
        noise = self._noise[f.machine_id]
        noisy = value + noise.normal(0.05 * span * x)
        if noise.uniform() < 0.01 + 0.04 * x:
            noisy += (1.0 if noise.uniform() < 0.5 else -1.0) * span * noise.uniform(0.3, 0.6) * x
        return noisy
