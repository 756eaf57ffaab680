"""The README is the reference: it must name every machine kind, signal, fault and protocol fault."""

from __future__ import annotations

from pathlib import Path

import pytest

from simulators import MACHINE_KINDS
from simulators.faults import FAULT_KINDS
from simulators.protocol_faults import MODBUS_EXCEPTIONS, PROTOCOL_FAULT_KINDS
from simulators.register_map import CONVENTIONS

ROOT = Path(__file__).parents[2]
README = (ROOT / "simulators" / "README.md").read_text(encoding="utf-8")


@pytest.mark.parametrize("kind", sorted(MACHINE_KINDS))
def test_readme_lists_every_signal_with_its_unit(kind: str) -> None:
    row = next(line for line in README.splitlines() if line.startswith(f"| `{kind}` |"))
    for spec in MACHINE_KINDS[kind].signal_specs:
        if "same as" not in row:
            assert f"`{spec.name}` {spec.unit}" in row, (kind, spec.name)


def test_readme_lists_every_fault_and_protocol_fault() -> None:
    for name in FAULT_KINDS:
        assert f"| `{name}` |" in README, name
    for kind in PROTOCOL_FAULT_KINDS:
        assert f"| `{kind}` |" in README, kind
    for exception in ("device_busy", "illegal_address"):
        assert exception in MODBUS_EXCEPTIONS
        assert exception in README


def test_readme_register_map_matches_the_conventions() -> None:
    assert "holding | 100-101 | parts counter, uint32 ABCD" in README
    assert "holding | 102 | state code, uint16: 0 off, 1 idle, 2 running, 3 setup" in README
    assert "0 off, 1 idle, 2 running, 3 setup" in CONVENTIONS["modbus_state"]
    assert "nsu=urn:edge-agent:simulator;s=<machine>.<signal>" in README


def test_user_guide_lists_signal_order_as_served() -> None:
    guide = (ROOT / "docs" / "simulators.md").read_text(encoding="utf-8").replace("\n", " ")
    for kind in ("pump", "press"):
        order = ", ".join(MACHINE_KINDS[kind].signal_names())
        assert f"{kind}: {order}" in guide, kind
