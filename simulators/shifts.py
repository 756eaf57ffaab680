"""Shift calendars: machines off outside working hours and on days off.

A week of data with nights and weekends off has the start-ups and cool-downs a detector meets
on a real shop floor. The calendar reads simulated time placed on the scenario's start (UTC),
with plain arithmetic (no datetime per step) so recordings stay fast.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import datetime

DAY_NAMES = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")
_HOURS = re.compile(r"^(\d{1,2}):(\d{2})-(\d{1,2}):(\d{2})$")
_EPOCH_WEEKDAY = 3  # 1970-01-01 was a Thursday (Monday = 0)


def parse_hours(text: str) -> tuple[int, int]:
    """Working hours "06:00-22:00" as (start, end) minutes of the day; end may be before start
    (a night shift "22:00-06:00"). Raises ValueError with the accepted form."""
    match = _HOURS.match(text.strip())
    if match is None:
        raise ValueError(f"{text!r} is not a time range. Fix: write e.g. '06:00-22:00'")
    h1, m1, h2, m2 = (int(g) for g in match.groups())
    if not (h1 <= 24 and h2 <= 24 and m1 < 60 and m2 < 60) or (h1 * 60 + m1) > 1440 or (h2 * 60 + m2) > 1440:
        raise ValueError(f"{text!r} has an hour or minute out of range. Fix: write e.g. '06:00-22:00'")
    start, end = h1 * 60 + m1, h2 * 60 + m2
    if start == end:
        raise ValueError(f"{text!r} is empty. Fix: for round the clock leave shifts out")
    return start, end


@dataclass(frozen=True, slots=True)
class ShiftCalendar:
    """When machines work: minutes of the day and days of the week (UTC, from ``start``)."""

    start: datetime
    start_minute: int
    end_minute: int
    days: frozenset[int]
    machines: frozenset[str] | None = None
    """None: every machine of the plant."""

    def applies_to(self, machine_id: str) -> bool:
        """Whether this calendar governs the machine."""
        return self.machines is None or machine_id in self.machines

    def working(self, t: float) -> bool:
        """Whether simulated time ``t`` falls in a shift (a night shift counts for the day it starts)."""
        seconds = self.start.timestamp() + t
        day = int(seconds // 86400)
        minute = (seconds - day * 86400) / 60.0
        if self.start_minute < self.end_minute:
            return (day + _EPOCH_WEEKDAY) % 7 in self.days and self.start_minute <= minute < self.end_minute
        if minute >= self.start_minute:  # evening part of a night shift
            return (day + _EPOCH_WEEKDAY) % 7 in self.days
        return minute < self.end_minute and (day - 1 + _EPOCH_WEEKDAY) % 7 in self.days
