"""The keys of a scenario file, as pydantic models (unknown keys are errors, never ignored).

Field types do the single-key checks (a duration parses, a severity is a number, a state is one
of four); ``scenario_checks`` does the checks that need several keys.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Annotated, Literal

from pydantic import AwareDatetime, BaseModel, BeforeValidator, ConfigDict, Field

from simulators.durations import parse_duration
from simulators.shifts import parse_hours

Duration = Annotated[float, BeforeValidator(parse_duration)]
DEFAULT_START = datetime(2026, 1, 1, tzinfo=UTC)


class _Strict(BaseModel):
    """The same rule as the agent's ``StrictModel``, kept here because the simulators import nothing of the agent.

    The simulators are the machines the agent is tested against; sharing even a base class would let
    one change alter both sides of a test at once (tests/helpers/layering.py holds the rule).
    """

    model_config = ConfigDict(extra="forbid", frozen=True)


class FaultEntry(_Strict):
    """One scheduled fault."""

    machine: str
    fault: str
    at: Duration = 0.0
    severity: float = 1.0
    progression: Literal["sudden", "linear", "exponential", "intermittent"] | None = None
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
    kind: Literal["latency", "exception", "stale", "bad_status", "clock_offset"]
    machine: str | None = None
    """None: every machine."""
    at: Duration = 0.0
    duration: Duration | None = None
    latency: Duration | None = None
    offset: Duration | None = None
    """clock_offset: how far the machine's clock is off (negative: behind)."""
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


def allowed_keys(parent: str) -> list[str]:
    """The keys allowed under a dotted location (for "unknown key" messages)."""
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
