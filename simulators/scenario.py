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

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Annotated, Any, Literal

import yaml
from pydantic import AwareDatetime, BaseModel, BeforeValidator, ConfigDict, Field, ValidationError

from simulators.durations import parse_duration
from simulators.errors import Problem, ScenarioError, SimulatorError
from simulators.faults import FaultBook, fault_problems
from simulators.faults.book import FaultOverlapError
from simulators.physics import MachineState
from simulators.physics.registry import MACHINE_KINDS, resolve_machines
from simulators.plant import LoadWindow, ModeWindow, Plant
from simulators.protocol_faults import checked_code
from simulators.shifts import DAY_NAMES, ShiftCalendar, parse_hours

Duration = Annotated[float, BeforeValidator(parse_duration)]
DEFAULT_START = datetime(2026, 1, 1, tzinfo=UTC)


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class FaultEntry(_Strict):
    """One scheduled fault."""

    machine: str
    fault: str
    at: Duration = 0.0
    severity: float = 1.0
    progression: Literal["sudden", "linear", "exponential"] | None = None
    ramp: Duration | None = None
    duration: Duration | None = None
    signal: str | None = None


def _yaml_off(value: object) -> object:
    """YAML 1.1 reads a bare ``off`` as false; in a state field it can only mean "off"."""
    return "off" if value is False else value


class ModeEntry(_Strict):
    """One scheduled operating mode (overrides the machine's automatic rhythm for its window)."""

    machine: str
    state: Annotated[Literal["off", "idle", "running", "setup"], BeforeValidator(_yaml_off)]
    at: Duration = 0.0
    duration: Duration | None = None


class ProtocolFaultEntry(_Strict):
    """A scheduled protocol fault for live runs (``edge-sim run``); recordings have no wire."""

    protocol: Literal["opcua", "modbus"]
    kind: Literal["latency", "exception", "stale", "bad_status"]
    machine: str | None = None
    """None: every machine."""
    at: Duration = 0.0
    duration: Duration | None = None
    latency: Duration | None = None
    code: str | int | None = None
    probability: float = Field(default=1.0, gt=0.0, le=1.0)


class LoadEntry(_Strict):
    """One scheduled load (fraction of rated, e.g. a demand step to show cause and effect)."""

    machine: str
    load: float = Field(ge=0.0, le=1.0)
    at: Duration = 0.0
    duration: Duration | None = None


DayName = Literal["mon", "tue", "wed", "thu", "fri", "sat", "sun"]
WORKDAYS: tuple[DayName, ...] = ("mon", "tue", "wed", "thu", "fri")


def _hours(value: object) -> object:
    if isinstance(value, str):
        parse_hours(value)  # raises ValueError with the fix
    return value


class ShiftsEntry(_Strict):
    """Working time: machines are off outside it (explicit mode windows still win)."""

    hours: Annotated[str, BeforeValidator(_hours)]
    days: list[DayName] = Field(default_factory=lambda: list(WORKDAYS), min_length=1)
    machines: list[str] | None = None


class ScenarioFile(_Strict):
    """The keys of a scenario file."""

    description: str | None = None
    seed: int = 1
    start: AwareDatetime = DEFAULT_START
    step: Duration = 1.0
    time_scale: float = Field(default=1.0, gt=0)
    machines: list[str] | dict[str, str] | None = None
    modes: list[ModeEntry] = Field(default_factory=list)
    loads: list[LoadEntry] = Field(default_factory=list)
    shifts: ShiftsEntry | None = None
    faults: list[FaultEntry] = Field(default_factory=list)
    protocol_faults: list[ProtocolFaultEntry] = Field(default_factory=list)


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
    lines = _key_lines(root)
    if data is None:
        data = {}
    if not isinstance(data, dict):
        raise ScenarioError(source, [Problem("", "a scenario is a mapping of keys. Fix: start with e.g. 'seed: 1'", 1)])
    try:
        spec = ScenarioFile.model_validate(data)
    except ValidationError as exc:
        problems = [_pydantic_problem(error, lines) for error in exc.errors()]
        raise ScenarioError(source, problems) from None
    cross, machines = _cross_check(spec)
    if cross:
        raise ScenarioError(source, [Problem(key, text, _line_of(key, lines)) for key, text in cross])
    return Scenario(source, spec, machines)


def _cross_check(spec: ScenarioFile) -> tuple[list[tuple[str, str]], list[tuple[str, str]]]:
    """Checks that need more than one key: machines, signals, fault fit, overlaps, negative times."""
    problems: list[tuple[str, str]] = []
    if spec.step <= 0:
        problems.append(("step", f"step must be positive, got {spec.step:g} s. Fix: e.g. step: 1s"))
    try:
        machines = resolve_machines(spec.machines)
    except SimulatorError as exc:
        return [*problems, ("machines", str(exc))], []
    kinds = dict(machines)
    problems.extend(_check_faults(spec, kinds))
    problems.extend(_check_windows("modes", spec.modes, kinds))
    problems.extend(_check_windows("loads", spec.loads, kinds))
    problems.extend(_check_protocol_faults(spec, kinds))
    shift_machines = (spec.shifts.machines or []) if spec.shifts is not None else []
    for i, machine in enumerate(shift_machines):
        if machine not in kinds:
            problems.append(
                (f"shifts.machines[{i}]", f"no machine {machine!r} in this scenario. Fix: use one of {list(kinds)}")
            )
    return problems, machines


def _check_faults(spec: ScenarioFile, kinds: dict[str, str]) -> list[tuple[str, str]]:
    """Each fault fits its machine, and no two of one exclusive group overlap."""
    problems: list[tuple[str, str]] = []
    signals = {mid: MACHINE_KINDS[kind].signal_names() for mid, kind in kinds.items()}
    book = FaultBook(spec.seed, {mid: (kinds[mid], signals[mid]) for mid in kinds})
    entry_of: dict[int, int] = {}  # fault id in the book -> index in faults:
    for i, f in enumerate(spec.faults):
        key = f"faults[{i}]"
        if f.machine not in kinds:
            problems.append(
                (f"{key}.machine", f"no machine {f.machine!r} in this scenario. Fix: use one of {list(kinds)}")
            )
            continue
        if f.at < 0:
            problems.append((f"{key}.at", f"at must not be negative, got {f.at:g} s. Fix: e.g. at: 2h"))
            continue
        kind, names = kinds[f.machine], signals[f.machine]
        fit = fault_problems(
            kind, names, f.fault, severity=f.severity, signal=f.signal, ramp_s=f.ramp, duration_s=f.duration
        )
        problems.extend((f"{key}.{field}", text) for field, text in fit)
        if fit:
            continue
        try:
            added = book.add(
                f.machine,
                f.fault,
                severity=f.severity,
                start_s=f.at,
                progression=f.progression,
                ramp_s=f.ramp,
                duration_s=f.duration,
                signal=f.signal,
            )
        except FaultOverlapError as exc:
            other = exc.existing
            on = f" on {other.signal}" if other.signal else ""
            problems.append(
                (
                    key,
                    f"overlaps faults[{entry_of[other.fault_id]}] ({other.fault}{on} on {f.machine}); "
                    "a fault cannot overlap itself and a sensor has one fault at a time. "
                    "Fix: end one (duration) before the other starts (at)",
                )
            )
        else:
            entry_of[added.fault_id] = i
    return problems


def _check_protocol_faults(spec: ScenarioFile, kinds: dict[str, str]) -> list[tuple[str, str]]:
    """Each protocol fault fits its protocol, has what its kind needs, and overlaps no other
    window of the same protocol on the same machine (clearing one would clear both)."""
    problems: list[tuple[str, str]] = []
    windows: list[tuple[str, str | None, float, float, int]] = []
    for i, f in enumerate(spec.protocol_faults):
        key = f"protocol_faults[{i}]"
        if f.machine is not None and f.machine not in kinds:
            problems.append(
                (f"{key}.machine", f"no machine {f.machine!r} in this scenario. Fix: use one of {list(kinds)}")
            )
            continue
        if f.at < 0 or (f.duration is not None and f.duration <= 0):
            problems.append(
                (key, "at must not be negative and duration must be positive. Fix: e.g. at: 10m, duration: 2m")
            )
            continue
        if f.kind == "latency" and (f.latency is None or f.latency < 0):
            problems.append((f"{key}.latency", "a latency fault needs latency. Fix: e.g. latency: 500ms"))
            continue
        try:
            checked_code(f.protocol, f.kind, f.code)
        except SimulatorError as exc:
            misfit = (f.protocol, f.kind) in {("modbus", "bad_status"), ("opcua", "exception")}
            problems.append((f"{key}.kind" if misfit else f"{key}.code", str(exc)))
            continue
        end = float("inf") if f.duration is None else f.at + f.duration
        for protocol, machine, start, other_end, j in windows:
            same_machine = machine is None or f.machine is None or machine == f.machine
            if protocol == f.protocol and same_machine and f.at < other_end and start < end:
                problems.append((key, f"overlaps protocol_faults[{j}]. Fix: end one before the other starts"))
        windows.append((f.protocol, f.machine, f.at, end, i))
    return problems


def _check_windows(
    section: str, entries: Sequence[ModeEntry | LoadEntry], kinds: dict[str, str]
) -> list[tuple[str, str]]:
    """Each mode or load window names a machine, starts at or after 0, lasts, and overlaps no other."""
    problems: list[tuple[str, str]] = []
    windows: dict[str, list[tuple[float, float, int]]] = {}
    for i, m in enumerate(entries):
        key = f"{section}[{i}]"
        if m.machine not in kinds:
            problems.append(
                (f"{key}.machine", f"no machine {m.machine!r} in this scenario. Fix: use one of {list(kinds)}")
            )
            continue
        if m.at < 0:
            problems.append((f"{key}.at", f"at must not be negative, got {m.at:g} s. Fix: e.g. at: 2h"))
            continue
        if m.duration is not None and m.duration <= 0:
            problems.append((f"{key}.duration", f"duration must be positive, got {m.duration:g} s. Fix: e.g. 8h"))
            continue
        end = float("inf") if m.duration is None else m.at + m.duration
        for start, other_end, j in windows.get(m.machine, []):
            if m.at < other_end and start < end:
                problems.append((key, f"overlaps {section}[{j}] on {m.machine}. Fix: end one before the other starts"))
        windows.setdefault(m.machine, []).append((m.at, end, i))
    return problems


def _pydantic_problem(error: Any, lines: dict[str, int]) -> Problem:
    key = _dotted(tuple(error["loc"]))
    message = str(error["msg"]).removeprefix("Value error, ")
    if error["type"] == "extra_forbidden":
        parent = key.rsplit(".", 1)[0] if "." in key else ""
        allowed = _allowed_keys(parent)
        message = f"unknown key. Fix: remove it or use one of {allowed}"
    elif error["type"] == "missing":
        message = "is required. Fix: add it"
    elif "Fix:" not in message:
        message = f"{message} (got {error.get('input')!r}). Fix: correct the value"
    return Problem(key, message, _line_of(key, lines))


def _allowed_keys(parent: str) -> list[str]:
    if parent.startswith("faults["):
        return list(FaultEntry.model_fields)
    if parent.startswith("modes["):
        return list(ModeEntry.model_fields)
    if parent.startswith("protocol_faults["):
        return list(ProtocolFaultEntry.model_fields)
    if parent.startswith("loads["):
        return list(LoadEntry.model_fields)
    if parent.startswith("shifts"):
        return list(ShiftsEntry.model_fields)
    return list(ScenarioFile.model_fields)


def _dotted(loc: tuple[Any, ...]) -> str:
    out = ""
    for part in loc:
        if isinstance(part, int):
            out += f"[{part}]"
        elif part in {"list[str]", "dict[str,str]"}:
            continue  # pydantic's union branch names are not keys
        else:
            out += f".{part}" if out else str(part)
    return out


def _key_lines(node: yaml.Node | None, prefix: str = "") -> dict[str, int]:
    """1-based line of every key and list item in the YAML tree, by dotted key."""
    lines: dict[str, int] = {}
    if isinstance(node, yaml.MappingNode):
        for key_node, value_node in node.value:
            key = f"{prefix}.{key_node.value}" if prefix else str(key_node.value)
            lines[key] = key_node.start_mark.line + 1
            lines.update(_key_lines(value_node, key))
    elif isinstance(node, yaml.SequenceNode):
        for i, item in enumerate(node.value):
            key = f"{prefix}[{i}]"
            lines[key] = item.start_mark.line + 1
            lines.update(_key_lines(item, key))
    return lines


def _line_of(key: str, lines: dict[str, int]) -> int | None:
    while key:
        if key in lines:
            return lines[key]
        key = key.rsplit(".", 1)[0] if "." in key else key.rsplit("[", 1)[0] if "[" in key else ""
    return None
