"""Scenario checks that need more than one key: machines exist, faults fit their machine and
signal, exclusive faults and windows do not overlap, times are not negative.

Each check returns (dotted key, problem with its fix) pairs; the loader adds file and line.
"""

from __future__ import annotations

from collections.abc import Sequence

from simulators.errors import SimulatorError
from simulators.faults import FaultBook, fault_problems
from simulators.faults.book import FaultOverlapError
from simulators.physics.registry import MACHINE_KINDS, resolve_machines
from simulators.protocol_faults import checked_code
from simulators.scenario_schema import LoadEntry, ModeEntry, ScenarioFile


def cross_check(spec: ScenarioFile) -> tuple[list[tuple[str, str]], list[tuple[str, str]]]:
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
        if f.kind == "clock_offset" and f.offset is None:
            problems.append((f"{key}.offset", "a clock_offset fault needs offset. Fix: e.g. offset: -1h"))
            continue
        try:
            checked_code(f.protocol, f.kind, f.code)
        except SimulatorError as exc:
            misfit = (f.protocol, f.kind) in {
                ("modbus", "bad_status"),
                ("opcua", "exception"),
                ("modbus", "clock_offset"),
            }
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
