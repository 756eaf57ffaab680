"""The optional ``alerts:`` section of the agent config.

Example (every key optional; the defaults are shown)::

    alerts:
      detector: pca              # robust | pca | iforest (iforest needs scikit-learn to learn)
      window: 60s                # feature window length
      hop: 30s                   # a new window every hop (overlap when shorter than window)
      learn_after: 24h           # good running data to collect before the model is learned
      false_alarms_per_day: 0.5  # budget the threshold is calibrated to, per machine
      k: 3                       # raise when k of the last n windows exceed the threshold
      n: 5
      clear_after: 5             # clear after this many windows in a row below clear_level
      clear_level: 0.7
      cooldown: 30m              # no new alert on the machine this long after a clear
      data_dir: data/alerts      # models and alert state, one folder per machine
      retrain_every: null        # e.g. 7d: relearn from recent normal windows (off by default)
      retrain_on: null           # how much recent data a retrain uses (default: learn_after)
      keep_models: 3             # model versions kept per machine (the current one included)
      state:                     # default operating-state signal for every machine
        signal: state_code
        codes: {"0": "off", "1": "idle", "2": "running", "3": "setup"}
      machines:
        press-1:
          state: {signal: motor_current, off_below: 1.0, running_above: 8.0}
          signals: [hydraulic_pressure, oil_temperature, motor_current]
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Self

from pydantic import Field, field_validator, model_validator

from edge_agent.core.config_base import StrictModel
from edge_agent.core.durations import Duration, format_duration


class StateSignalConfig(StrictModel):
    """Which tag tells the operating state, and how: ``codes`` for a code or name, else two levels."""

    signal: str = Field(description="tag carrying the state (a code, a name, or a level such as motor current)")
    codes: dict[str, str] | None = Field(default=None, description="tag value (as text) -> state name")
    off_below: float | None = Field(
        default=None, allow_inf_nan=False, description="level signal: below this the machine is off"
    )
    running_above: float | None = Field(
        default=None, allow_inf_nan=False, description="level signal: at or above this it runs"
    )

    @model_validator(mode="after")
    def _one_way(self) -> Self:
        levels = (self.off_below is not None, self.running_above is not None)
        if self.codes is None and not all(levels):
            raise ValueError("give either codes, or both off_below and running_above")
        if self.codes is not None and any(levels):
            raise ValueError("give either codes or off_below/running_above, not both")
        if all(levels) and self.off_below > self.running_above:  # type: ignore[operator]
            raise ValueError(f"off_below ({self.off_below}) is above running_above ({self.running_above}); swap them")
        return self


class MachineAlertsConfig(StrictModel):
    """Per-machine overrides."""

    enabled: bool = True
    state: StateSignalConfig | None = None
    signals: list[str] | None = Field(default=None, description="tags to model (default: every numeric tag)")
    detector: str | None = None
    model_version: str | None = Field(
        default=None,
        description="pin (roll back to) this model version of the machine; it is then never retrained",
        min_length=4,
        pattern=r"^[0-9a-f]+$",
    )

    @field_validator("detector")
    @classmethod
    def _known(cls, value: str | None) -> str | None:
        return None if value is None else _known_detector(value)


def _round_down(seconds: float) -> float:
    """``seconds`` rounded down to two significant digits (a hop to suggest: 4.41 -> 4.4)."""
    step = 10.0 ** (math.floor(math.log10(seconds)) - 1)
    return round(math.floor(seconds / step + 1e-9) * step, 9)


def _known_detector(value: str) -> str:
    from models.detectors import DETECTORS

    if value not in DETECTORS:
        raise ValueError(f"unknown detector {value!r}; use one of {sorted(DETECTORS)}")
    return value


class AlertsConfig(StrictModel):
    """Predictive-maintenance alerts: learn each machine's normal, alert on lasting deviations."""

    enabled: bool = True
    detector: str = "pca"
    window: Duration = Field(default=60.0, gt=0)
    hop: Duration = Field(default=30.0, gt=0)
    min_fill: float = Field(default=0.8, gt=0, le=1)
    learn_after: Duration = Field(default=86400.0, gt=0)
    learn_states: list[str] = Field(default_factory=lambda: ["running"], min_length=1)
    false_alarms_per_day: float = Field(default=0.5, gt=0, le=10_000)
    k: int = Field(default=3, ge=1, le=1000)
    n: int = Field(default=5, ge=1, le=1000)
    clear_after: int = Field(default=5, ge=1, le=10_000)
    clear_level: float = Field(default=0.7, ge=0, le=1)
    cooldown: Duration = Field(default=1800.0, ge=0)
    data_dir: Path = Path("data/alerts")
    exclude_signals: list[str] = Field(
        default_factory=lambda: ["*count*", "*counter*"],
        description="glob patterns of numeric tags never modelled (counters only ever grow)",
    )
    state: StateSignalConfig | None = None
    machines: dict[str, MachineAlertsConfig] = Field(default_factory=dict)
    queue_rows: int = Field(
        default=10000, ge=10, le=10_000_000, description="rows buffered per machine before the oldest drop"
    )
    retrain_every: Duration | None = Field(
        default=None,
        gt=0,
        description="relearn each machine this often (sample time) from its recent normal windows; off when unset",
    )
    retrain_on: Duration | None = Field(
        default=None, gt=0, description="recent data a retrain learns from (default: learn_after)"
    )
    keep_models: int = Field(
        default=3, ge=1, le=1000, description="model versions kept per machine, the current one included"
    )

    @field_validator("detector")
    @classmethod
    def _known(cls, value: str) -> str:
        return _known_detector(value)

    @model_validator(mode="after")
    def _cross(self) -> Self:
        if self.k > self.n:
            raise ValueError(f"k ({self.k}) must not exceed n ({self.n})")
        if self.hop > self.window:
            raise ValueError(f"hop ({self.hop:g} s) is longer than window ({self.window:g} s): data would be skipped")
        for key in ("learn_after", "retrain_on"):
            problem = self.too_few_windows(key)
            if problem is not None:
                raise ValueError(problem)
        return self

    def learning_plan(self) -> str:
        """What learning will collect, in words (``check-config`` prints it)."""
        from models.model import MIN_WINDOWS, windows_in

        states = ", ".join(self.learn_states)
        return (
            f"learn after {format_duration(self.learn_after)} of {states}: "
            f"{windows_in(self.learn_after, self.hop)} windows of {format_duration(self.window)} every "
            f"{format_duration(self.hop)}, at least {MIN_WINDOWS} of them in one state"
        )

    def too_few_windows(self, key: str) -> str | None:
        """Why ``learn_after`` or ``retrain_on`` can never learn at this hop, with the fix; None if it can.

        The count is the learning rule's own (``models.model``): ``learn_after / hop`` windows are
        collected, and a state needs ``MIN_WINDOWS`` so that the part training fits and the part it
        holds out to calibrate the threshold are both big enough.
        """
        from models.model import MIN_WINDOWS, windows_in

        duration: float | None = getattr(self, key)
        if duration is None:
            return None
        have = windows_in(duration, self.hop)
        if have >= MIN_WINDOWS:
            return None
        states = self.learn_states
        where = f"state {states[0]}" if len(states) == 1 else f"one of the states {', '.join(states)}"
        what = "learning" if key == "learn_after" else "a retrain"
        return (
            f"{key} {format_duration(duration)} gives {have} windows of {format_duration(self.window)} every "
            f"{format_duration(self.hop)}; {what} needs at least {MIN_WINDOWS} in {where} (a third of them "
            f"calibrate the threshold). Fix: raise {key} to {format_duration(MIN_WINDOWS * self.hop)} or lower "
            f"hop to {format_duration(_round_down(duration / MIN_WINDOWS))}"
        )

    def for_machine(self, machine: str) -> MachineAlertsConfig:
        """The machine's overrides merged with the defaults."""
        own = self.machines.get(machine, MachineAlertsConfig())
        return MachineAlertsConfig(
            enabled=own.enabled,
            state=own.state or self.state,
            signals=own.signals,
            detector=own.detector or self.detector,
            model_version=own.model_version,
        )
