"""Where each value lives on the wire, and the pure encoders that put it there.

Modbus (one server, one unit id per machine, unit id = position + 1):

- input registers: signal *i* as float32, big-endian word order (ABCD), at address ``2*i``;
- holding registers: signal *i* as int16 ``round(value * 10)`` at address *i* (saturating at
  -3276.8 / 3276.7), parts counter uint32 ABCD at 100-101, state code uint16 at 102; addresses
  between the last signal and 100 read as 0.

OPC UA: namespace ``urn:edge-agent:simulator``, object ``Objects/Machines/<machine>``, one Double
variable per signal with string node id ``<machine>.<signal>``, plus ``<machine>.state`` (String)
and ``<machine>.state_code`` (UInt16), ``<machine>.parts_count`` (UInt32).

Encoders are pure functions so they are tested without sockets, and so ``served("modbus")``
records exactly what a float32 decode of the registers gives.
"""

from __future__ import annotations

import math
import struct
from dataclasses import asdict, dataclass, field

from simulators.errors import UnknownMachineError
from simulators.physics import MACHINE_KINDS, MachineState
from simulators.physics.registry import MachinesArg, resolve_machines

NAMESPACE_URI = "urn:edge-agent:simulator"
ENDPOINT_PATH = "/edge-sim/"
HOLDING_SCALE = 10
PARTS_ADDRESS = 100
STATE_ADDRESS = 102
HOLDING_SIZE = STATE_ADDRESS + 1
FLOAT32_MAX = 3.4028234663852886e38


def float32_round(value: float) -> float:
    """The value a client gets after a float32 round trip (huge values saturate, NaN stays NaN)."""
    if math.isnan(value):
        return value
    clipped = max(-FLOAT32_MAX, min(FLOAT32_MAX, value))
    result: float = struct.unpack(">f", struct.pack(">f", clipped))[0]
    return result


BYTE_ORDERS = ("ABCD", "DCBA", "BADC", "CDAB")
"""How the four bytes of a float32 are laid out over two registers; PLC vendors use all four."""


def float32_words(value: float, byte_order: str = "ABCD") -> tuple[int, int]:
    """Two registers holding ``value`` as float32 in ``byte_order`` (ABCD: big-endian, high word first).

    The letters name the big-endian bytes A (most significant) to D in the order they travel:
    CDAB swaps the words, BADC swaps the bytes in each word, DCBA reverses all four.
    """
    a, b, c, d = struct.pack(">f", float32_round(value))
    by_letter = {"A": a, "B": b, "C": c, "D": d}
    ordered = bytes(by_letter[letter] for letter in byte_order)
    return (ordered[0] << 8) | ordered[1], (ordered[2] << 8) | ordered[3]


def int16_word(value: float, scale: int = HOLDING_SCALE) -> int:
    """One register holding ``round(value * scale)`` as two's-complement int16, saturating."""
    if math.isnan(value):
        return 0
    scaled = max(-32768, min(32767, round(value * scale)))
    return scaled & 0xFFFF


def uint32_words(value: int) -> tuple[int, int]:
    """Two registers holding ``value`` as uint32, high word first (ABCD); wraps like a PLC counter."""
    value &= 0xFFFFFFFF
    return value >> 16, value & 0xFFFF


def input_image(values: list[float], byte_order: str = "ABCD") -> list[int]:
    """The input-register table of one machine: float32 per signal (ABCD unless told), in order."""
    words: list[int] = []
    for value in values:
        words.extend(float32_words(value, byte_order))
    return words


def holding_image(values: list[float], parts_count: int, state: MachineState) -> list[int]:
    """The holding-register table of one machine (addresses 0..102)."""
    words = [0] * HOLDING_SIZE
    for i, value in enumerate(values):
        words[i] = int16_word(value)
    words[PARTS_ADDRESS], words[PARTS_ADDRESS + 1] = uint32_words(parts_count)
    words[STATE_ADDRESS] = int(state)
    return words


def node_id(machine_id: str, name: str) -> str:
    """The namespace-URI form of a node id, as clients should write it in config."""
    return f"nsu={NAMESPACE_URI};s={machine_id}.{name}"


@dataclass(frozen=True, slots=True)
class SignalAddress:
    """Every address of one signal."""

    name: str
    unit: str
    description: str
    opcua_node: str
    modbus_input_address: int
    modbus_holding_address: int


@dataclass(frozen=True, slots=True)
class MachineDescription:
    """Everything a client needs to read one machine."""

    machine_id: str
    kind: str
    modbus_unit_id: int
    opcua_object: str
    signals: list[SignalAddress]
    status_nodes: dict[str, str] = field(default_factory=dict)
    modbus_status: dict[str, str] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class PlantDescription:
    """The register map and node ids of a whole plant; ``to_dict()`` gives plain JSON data."""

    namespace_uri: str
    endpoint_path: str
    machines: list[MachineDescription]
    conventions: dict[str, str]

    def to_dict(self) -> dict[str, object]:
        """Plain dicts and lists (JSON-serialisable)."""
        return asdict(self)

    def machine(self, machine_id: str) -> MachineDescription:
        """The description of one machine."""
        for machine in self.machines:
            if machine.machine_id == machine_id:
                return machine
        raise UnknownMachineError(machine_id, [m.machine_id for m in self.machines])


CONVENTIONS: dict[str, str] = {
    "modbus_input": "signal i: float32, byte order ABCD (big-endian words), input registers 2*i..2*i+1",
    "modbus_holding": "signal i: int16 = round(value*10), holding register i (saturates at +-3276.7)",
    "modbus_parts_count": "holding registers 100-101: uint32, ABCD",
    "modbus_state": "holding register 102: uint16 state code 0 off, 1 idle, 2 running, 3 setup",
    "modbus_addressing": "zero-based addresses on the wire; unit id = machine position + 1",
    "opcua_signal": "Double, string node id <machine>.<signal>, SourceTimestamp truncated to whole microseconds",
    "opcua_status": "<machine>.state (String), <machine>.state_code (UInt16), <machine>.parts_count (UInt32)",
}


def describe_machine(
    machine_id: str, kind: str, unit_id: int, signals: list[tuple[str, str, str]]
) -> MachineDescription:
    """The description of one machine from its (name, unit, description) signal list."""
    return MachineDescription(
        machine_id=machine_id,
        kind=kind,
        modbus_unit_id=unit_id,
        opcua_object=f"Objects/Machines/{machine_id}",
        signals=[
            SignalAddress(name, unit, text, node_id(machine_id, name), 2 * i, i)
            for i, (name, unit, text) in enumerate(signals)
        ],
        status_nodes={
            "state": node_id(machine_id, "state"),
            "state_code": node_id(machine_id, "state_code"),
            "parts_count": node_id(machine_id, "parts_count"),
        },
        modbus_status={
            "parts_count": f"holding {PARTS_ADDRESS}-{PARTS_ADDRESS + 1} uint32 ABCD",
            "state": f"holding {STATE_ADDRESS} uint16",
        },
    )


def describe(machines: MachinesArg = None) -> PlantDescription:
    """The register map and node ids of a plant (default plant when ``machines`` is None).

    Pure data, no server needed: the CLI prints it and docs are checked against it.
    """
    described = []
    for index, (machine_id, kind) in enumerate(resolve_machines(machines)):
        specs = MACHINE_KINDS[kind].signal_specs
        described.append(
            describe_machine(machine_id, kind, index + 1, [(s.name, s.unit, s.description) for s in specs])
        )
    return PlantDescription(NAMESPACE_URI, ENDPOINT_PATH, described, dict(CONVENTIONS))
