"""Shift calendars: off at night and at weekends, night shifts across midnight, located errors."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from simulators import MachineState, ScenarioError
from simulators.dataset import dataset
from simulators.scenario import parse_scenario
from simulators.shifts import ShiftCalendar, parse_hours

MONDAY = datetime(2026, 1, 5, tzinfo=UTC)


def hours(day: int, hour: float) -> float:
    return (day * 24 + hour) * 3600


def test_day_shift_on_workdays() -> None:
    calendar = ShiftCalendar(MONDAY, *parse_hours("06:00-22:00"), frozenset(range(5)))
    assert not calendar.working(hours(0, 5.99))
    assert calendar.working(hours(0, 6))
    assert calendar.working(hours(4, 21.9))  # Friday evening
    assert not calendar.working(hours(4, 22))
    assert not calendar.working(hours(5, 12))  # Saturday noon


def test_night_shift_belongs_to_the_day_it_starts() -> None:
    calendar = ShiftCalendar(MONDAY, *parse_hours("22:00-06:00"), frozenset({4}))  # Friday night only
    assert calendar.working(hours(4, 23))
    assert calendar.working(hours(5, 5))  # Saturday early morning: still Friday's shift
    assert not calendar.working(hours(5, 23))
    assert not calendar.working(hours(0, 2))  # Monday early morning: Sunday had no shift


def test_scenario_shifts_switch_machines_off_and_modes_still_win() -> None:
    text = """\
start: 2026-01-05T00:00:00Z
machines: [pump-1, press-1]
shifts: {hours: "06:00-22:00", machines: [pump-1]}
modes: [{machine: pump-1, state: setup, at: 1d2h, duration: 2h}]
"""
    data = dataset(parse_scenario(text), "3d", machine_id="pump-1", step="1h")
    states = data.state.tolist()
    assert states[2] == MachineState.OFF  # Monday 03:00
    assert states[12] != MachineState.OFF  # Monday 13:00
    assert states[26] == MachineState.SETUP  # Tuesday 03:00: the mode window wins
    press = dataset(parse_scenario(text), "1d", machine_id="press-1", step="1h")
    assert MachineState.OFF not in press.state.tolist()  # the calendar covers pump-1 only


@pytest.mark.parametrize(
    ("text", "key", "fix"),
    [
        ("shifts: {hours: '6 to 22'}\n", "shifts.hours", "'06:00-22:00'"),
        ("shifts: {hours: '25:00-22:00'}\n", "shifts.hours", "out of range"),
        ("shifts: {hours: '06:00-22:00', days: [mon, funday]}\n", "shifts.days[1]", "correct the value"),
        ("shifts: {hours: '06:00-22:00', machines: [robot-1]}\n", "shifts.machines[0]", "use one of"),
    ],
)
def test_bad_shifts_are_located(text: str, key: str, fix: str) -> None:
    with pytest.raises(ScenarioError) as info:
        parse_scenario(text)
    assert [p.key for p in info.value.problems] == [key]
    assert fix in info.value.problems[0].message
