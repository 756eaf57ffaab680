"""Scenarios: a plant, its operating modes and its faults on a schedule, in a YAML file.

A scenario makes a run reproducible: same file, same seed, same values, same ground truth.
Times (``at``, ``ramp``, ``duration``) are simulated time since the start, written like
``90s``, ``2h``, ``3d``. The whole file is checked before anything starts, and every problem
is reported with its line, key and fix.

Example::

    description: pump whose bearing wears out over the second half of a week
    seed: 7
    start: 2026-01-05T06:00:00Z   # wall-clock time of simulated time 0 in recordings
    step: 1s                      # sample interval of `edge-sim record`
    time_scale: 60                # `edge-sim run --scenario`: simulated seconds per real second
    machines: [pump-1]
    modes:
      - {machine: pump-1, state: "off", at: 2d, duration: 8h}
    loads:
      - {machine: pump-1, load: 0.95, at: 12h, duration: 2h}
    faults:
      - {machine: pump-1, fault: bearing_wear, at: 3d12h, severity: 0.8,
         progression: exponential, ramp: 3d}
      - {machine: pump-1, fault: sensor_drift, signal: flow, at: 1d, duration: 12h}
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

import yaml
from pydantic import ValidationError

from simulators.errors import Problem, ScenarioError
from simulators.physics import MachineState
from simulators.plant import LoadWindow, ModeWindow, Plant
from simulators.scenario_checks import cross_check
from simulators.scenario_schema import (
    DEFAULT_START,
    FaultEntry,
    LoadEntry,
    ModeEntry,
    ProtocolFaultEntry,
    ScenarioFile,
    ShiftsEntry,
)
from simulators.shifts import DAY_NAMES, ShiftCalendar, parse_hours
from simulators.yaml_locations import key_lines, line_of, pydantic_problem

__all__ = [
    "DEFAULT_START",
    "FaultEntry",
    "LoadEntry",
    "ModeEntry",
    "ProtocolFaultEntry",
    "Scenario",
    "ScenarioFile",
    "ShiftsEntry",
    "load_scenario",
    "parse_scenario",
]


@dataclass(frozen=True, slots=True)
class Scenario:
    """A checked scenario, ready to build its plant."""

    source: str
    spec: ScenarioFile
    machines: list[tuple[str, str]]

    @property
    def seed(self) -> int:
        """The plant seed."""
        return self.spec.seed

    @property
    def start(self) -> datetime:
        """Wall-clock time of simulated time 0 in recordings."""
        return self.spec.start

    @property
    def step_s(self) -> float:
        """Sample interval of recordings, seconds."""
        return self.spec.step

    @property
    def time_scale(self) -> float:
        """Simulated seconds per real second in live runs."""
        return self.spec.time_scale

    def build_plant(self) -> Plant:
        """A fresh plant with this scenario's machines, modes and faults scheduled."""
        plant = Plant(self.seed, dict(self.machines))
        for mode in self.spec.modes:
            end = None if mode.duration is None else mode.at + mode.duration
            plant.modes.append(ModeWindow(mode.machine, MachineState[mode.state.upper()], mode.at, end))
        if self.spec.shifts is not None:
            first, last = parse_hours(self.spec.shifts.hours)
            plant.shifts = ShiftCalendar(
                self.start,
                first,
                last,
                frozenset(DAY_NAMES.index(d) for d in self.spec.shifts.days),
                None if self.spec.shifts.machines is None else frozenset(self.spec.shifts.machines),
            )
        for entry in self.spec.loads:
            end = None if entry.duration is None else entry.at + entry.duration
            plant.loads.append(LoadWindow(entry.machine, entry.load, entry.at, end))
        for f in self.spec.faults:
            plant.faults.add(
                f.machine,
                f.fault,
                severity=f.severity,
                start_s=f.at,
                progression=f.progression,
                ramp_s=f.ramp,
                duration_s=f.duration,
                signal=f.signal,
            )
        return plant


def load_scenario(path: str | Path) -> Scenario:
    """Read and check a scenario file; raises ``ScenarioError`` listing every problem."""
    source = str(path)
    try:
        text = Path(path).read_text(encoding="utf-8")
    except OSError as exc:
        raise ScenarioError(
            source, [Problem("", f"cannot read the file ({exc.strerror}). Fix: check the path")]
        ) from None
    return parse_scenario(text, source)


def parse_scenario(text: str, source: str = "<scenario>") -> Scenario:
    """Check a scenario given as YAML text; ``source`` names it in errors."""
    try:
        root = yaml.compose(text, Loader=yaml.SafeLoader)
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        line = mark.line + 1 if mark is not None else None
        what = getattr(exc, "problem", None) or str(exc)
        problem = Problem("", f"not valid YAML: {what}. Fix: check indentation, brackets and quoting", line)
        raise ScenarioError(source, [problem]) from None
    lines = key_lines(root)
    if data is None:
        data = {}
    if not isinstance(data, dict):
        raise ScenarioError(source, [Problem("", "a scenario is a mapping of keys. Fix: start with e.g. 'seed: 1'", 1)])
    try:
        spec = ScenarioFile.model_validate(data)
    except ValidationError as exc:
        problems = [pydantic_problem(error, lines) for error in exc.errors()]
        raise ScenarioError(source, problems) from None
    cross, machines = cross_check(spec)
    if cross:
        raise ScenarioError(source, [Problem(key, text, line_of(key, lines)) for key, text in cross])
    return Scenario(source, spec, machines)
