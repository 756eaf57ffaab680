"""Operating state (off / idle / running / ...) of a machine from one configured signal.

A stopped machine is not an anomaly, and a machine that idles looks nothing like one that
runs. So every window is tagged with the state held through it; models learn per state and
score only in states they learned. A state never seen in training (the first setup after a
model was learned in production) gets no score and no alert, rather than a false alarm.

Two ways to read the state: a code signal mapped by ``codes`` (``state_code`` 0/1/2/3 on the
simulators, a PLC's mode word), or a level signal (motor current, speed) compared with
``off_below`` and ``running_above`` (between the two: idle). ``learn_levels`` finds those two
levels from data when nobody knows them.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

import numpy as np
import numpy.typing as npt

from edge_agent.core.errors import ModelError

RUNNING = "running"
UNKNOWN = "unknown"


@dataclass(frozen=True, slots=True)
class StateRule:
    """How to read the state: ``codes`` for a code signal, else the two levels of a level signal."""

    signal: str
    codes: Mapping[str, str] = field(default_factory=dict)
    off_below: float | None = None
    running_above: float | None = None

    def __post_init__(self) -> None:
        if not self.codes and (self.off_below is None or self.running_above is None):
            raise ModelError(f"state signal {self.signal!r}: give codes, or both off_below and running_above")
        if self.off_below is not None and self.running_above is not None and self.off_below > self.running_above:
            raise ModelError(
                f"state signal {self.signal!r}: off_below ({self.off_below}) is above running_above "
                f"({self.running_above}). Fix: swap them"
            )

    def classify(self, value: object) -> str:
        """The state for one reading of the signal; ``unknown`` when it cannot be read."""
        if self.codes:
            key = str(int(value)) if isinstance(value, int | float) and not isinstance(value, bool) else str(value)
            return self.codes.get(key, UNKNOWN)
        if isinstance(value, bool) or not isinstance(value, int | float) or not np.isfinite(value):
            return UNKNOWN
        assert self.off_below is not None
        assert self.running_above is not None
        if value < self.off_below:
            return "off"
        return RUNNING if value >= self.running_above else "idle"


SIMULATOR_CODES: dict[str, str] = {"0": "off", "1": "idle", "2": "running", "3": "setup"} | {
    name: name for name in ("off", "idle", "running", "setup")
}
"""The simulators' ``state_code`` (Modbus register 102) and the names of their ``state`` string (OPC UA)."""


def learn_levels(signal: str, values: npt.NDArray[np.float64]) -> StateRule:
    """Find off/running levels of a level signal by splitting its histogram where it is emptiest.

    Otsu's method on the finite values: the split that best separates two groups. Below the
    low group's middle is off, above the split running. Refuses a signal that never changes.
    """
    x = np.asarray(values, dtype=np.float64)
    x = x[np.isfinite(x)]
    if len(x) < 10 or float(x.max() - x.min()) <= 1e-9 * max(abs(float(x.max())), 1.0):
        raise ModelError(f"state signal {signal!r} does not vary in the data; give off_below and running_above")
    hist, edges = np.histogram(x, bins=64)
    mids = (edges[:-1] + edges[1:]) / 2
    w0 = np.cumsum(hist)
    w1 = w0[-1] - w0
    m0 = np.cumsum(hist * mids) / np.maximum(w0, 1)
    m1 = (np.sum(hist * mids) - np.cumsum(hist * mids)) / np.maximum(w1, 1)
    split = int(np.argmax(w0 * w1 * (m0 - m1) ** 2))
    running_above = float(edges[split + 1])
    off_below = float(min(m0[split] / 2, running_above))
    return StateRule(signal, off_below=off_below, running_above=running_above)
