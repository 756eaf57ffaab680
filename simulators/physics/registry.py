"""Machine kinds by name, and how a ``machines=`` argument becomes a list of (id, kind).

The registry is a plain dict: a new kind is one module plus one line here.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence

from simulators.errors import SimulatorError
from simulators.physics.base import MachineModel
from simulators.physics.cnc import CncSpindle
from simulators.physics.motor import CompressorMotor, ConveyorMotor
from simulators.physics.press import HydraulicPress
from simulators.physics.pump import CentrifugalPump

MACHINE_KINDS: dict[str, type[MachineModel]] = {
    "pump": CentrifugalPump,
    "press": HydraulicPress,
    "cnc": CncSpindle,
    "conveyor": ConveyorMotor,
    "compressor": CompressorMotor,
}

DEFAULT_PLANT: tuple[tuple[str, str], ...] = (("pump-1", "pump"), ("press-1", "press"))
"""The plant served when ``machines`` is None: (machine id, kind) in unit-id order."""

MACHINE_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$")

MachinesArg = Sequence[str] | Mapping[str, str] | None
"""``None`` (default plant), ids whose kind is the part before the last '-' ("pump-2"), or {id: kind}."""


def resolve_machines(machines: MachinesArg) -> list[tuple[str, str]]:
    """Turn a ``machines=`` argument into [(machine id, kind)], rejecting bad ids and kinds."""
    if machines is None:
        return list(DEFAULT_PLANT)
    if isinstance(machines, Mapping):
        pairs = [(str(k), str(v)) for k, v in machines.items()]
    elif isinstance(machines, str):
        raise SimulatorError(f"machines={machines!r} is a string. Fix: pass a list, e.g. [{machines!r}]")
    else:
        pairs = [(mid, mid.rsplit("-", 1)[0]) for mid in machines]
    if not pairs:
        raise SimulatorError("machines is empty. Fix: pass None for the default plant or at least one id")
    seen: set[str] = set()
    for mid, kind in pairs:
        if not MACHINE_ID.match(mid) or "." in mid:
            raise SimulatorError(
                f"machine id {mid!r} is not allowed. Fix: use letters, digits, '-' and '_' only (e.g. 'pump-2')"
            )
        if kind not in MACHINE_KINDS:
            raise SimulatorError(
                f"machine {mid!r}: unknown kind {kind!r}. Fix: use one of {sorted(MACHINE_KINDS)}, "
                "e.g. name it 'pump-2' or pass {'my-id': 'pump'}"
            )
        if mid in seen:
            raise SimulatorError(f"machine id {mid!r} appears twice. Fix: give every machine its own id")
        seen.add(mid)
    if len(pairs) > 247:
        raise SimulatorError("more than 247 machines: Modbus unit ids run out. Fix: simulate fewer machines")
    return pairs


def build_machine(machine_id: str, kind: str, seed: int) -> MachineModel:
    """A fresh model of ``kind`` named ``machine_id``."""
    return MACHINE_KINDS[kind](machine_id, seed)
