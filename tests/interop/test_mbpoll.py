"""Debian's ``mbpoll`` (libmodbus) reads the simulator's Modbus TCP server: values as served.

mbpoll's reference numbers are 1-based unless ``-0`` (PDU addressing) is given; every call here
passes ``-0`` so the numbers equal the README's zero-based addresses. ``-B`` selects big-endian
word order (ABCD), the simulator's float32 and uint32 layout. One mbpoll call is one read request,
so the registers it prints come from one update: each read must equal one update recorded in
``sim.served("modbus", ...)`` between the start and the end of the call.
"""

from __future__ import annotations

import asyncio
import math
import re
import struct
from collections.abc import AsyncIterator, Callable, Mapping
from typing import Any

import pytest

from simulators import Simulation
from tests.interop.conftest import Completed, run_client

MACHINES = ["pump-1", "press-1", "cnc-1"]
LINE = re.compile(r"^\[(\d+)\]:\s+(\S+)\s*$", re.MULTILINE)
STATUS_REGISTERS = 100  # parts counter hi, lo; then the state code at 102


@pytest.fixture
async def sim() -> AsyncIterator[Simulation]:
    async with Simulation(seed=1, machines=MACHINES, update_interval=0.1, opcua_port=None, modbus_port=0) as running:
        async with asyncio.timeout(5):
            await running.wait_updates(2)
        yield running


async def poll(mbpoll: str, sim: Simulation, machine: str, *options: str) -> Completed:
    """One read (``-1``) of ``machine``'s unit with zero-based references (``-0``)."""
    unit = str(sim.modbus.unit_id(machine))
    return await run_client(
        mbpoll, "-m", "tcp", "-a", unit, "-0", "-1", "-o", "2", "-p", str(sim.modbus.port), *options, "127.0.0.1"
    )


def registers(done: Completed) -> dict[int, str]:
    """``[ref]: value`` lines of mbpoll's output, by reference."""
    assert done.returncode == 0, done.explain()
    found = {int(ref): text for ref, text in LINE.findall(done.stdout)}
    assert found, f"no values in mbpoll's output\n{done.explain()}"
    return found


def latest_ns(sim: Simulation, machine: str) -> int:
    """Timestamp of the update being served now (every signal of a machine shares it)."""
    return sim.served("modbus", machine, sim.signals(machine)[0][0])[-1][0]


def updates_since(sim: Simulation, machine: str, since_ns: int) -> dict[int, dict[str, float]]:
    """Every update served from ``since_ns`` on: timestamp -> {signal: value}, incl. status signals."""
    names = [name for name, _ in sim.signals(machine)] + ["parts_count", "state_code"]
    updates: dict[int, dict[str, float]] = {}
    for name in names:
        for ts, value in sim.served("modbus", machine, name):
            if ts >= since_ns:
                updates.setdefault(ts, {})[name] = value
    assert updates, f"nothing served for {machine} since {since_ns}"
    return updates


def matching_update(
    read: Mapping[str, object],
    updates: dict[int, dict[str, float]],
    same: Callable[[str, float, Any], bool],
    done: Completed,
) -> int:
    """The timestamp of the served update whose every value is ``same`` as what mbpoll showed."""
    for ts, values in updates.items():
        if all(same(name, values[name], shown) for name, shown in read.items()):
            return ts
    pytest.fail(
        f"mbpoll read {read}, which matches no update served during the call:\n"
        + "\n".join(f"  {ts}: {values}" for ts, values in updates.items())
        + f"\n{done.explain()}"
    )


def int16_candidates(value: float) -> set[int]:
    """``round(value * 10)`` saturated to int16; both neighbours at an exact-half tie.

    The server scales the float64 value while ``served()`` records its float32 rounding, so a value
    within float32 precision of a .5 boundary may round either way.
    """
    scaled = value * 10
    options = {round(scaled)}
    if abs(scaled - math.floor(scaled) - 0.5) < 1e-5 * max(1.0, abs(scaled)):
        options |= {math.floor(scaled), math.ceil(scaled)}
    return {max(-32768, min(32767, option)) for option in options}


def signed16(text: str) -> int:
    number = int(text, 0)
    return number - 0x10000 if number > 0x7FFF else number


@pytest.mark.parametrize("machine", MACHINES)
async def test_input_registers_as_float32_abcd(mbpoll: str, sim: Simulation, machine: str) -> None:
    """``-t 3:float -B``: mbpoll's own float decoding prints every signal (printf %g) as served."""
    names = [name for name, _ in sim.signals(machine)]
    since = latest_ns(sim, machine)
    done = await poll(mbpoll, sim, machine, "-t", "3:float", "-B", "-r", "0", "-c", str(len(names)))
    shown = registers(done)
    assert sorted(shown) == [2 * i for i in range(len(names))], done.explain()
    read = {name: shown[2 * i] for i, name in enumerate(names)}
    matching_update(read, updates_since(sim, machine, since), lambda _n, v, s: f"{v:g}" == s, done)


@pytest.mark.parametrize("machine", MACHINES)
async def test_input_register_words_decode_to_exact_float32(mbpoll: str, sim: Simulation, machine: str) -> None:
    """``-t 3:hex``: the raw words, decoded high word first, are bit-for-bit the served float32."""
    names = [name for name, _ in sim.signals(machine)]
    since = latest_ns(sim, machine)
    done = await poll(mbpoll, sim, machine, "-t", "3:hex", "-r", "0", "-c", str(2 * len(names)))
    words = registers(done)
    assert sorted(words) == list(range(2 * len(names))), done.explain()
    read: dict[str, float] = {}
    for i, name in enumerate(names):
        raw = struct.pack(">HH", int(words[2 * i], 16), int(words[2 * i + 1], 16))
        read[name] = struct.unpack(">f", raw)[0]
    ts = matching_update(read, updates_since(sim, machine, since), lambda _n, v, r: v == r, done)
    assert all(math.isfinite(v) for v in read.values()), (ts, read)


@pytest.mark.parametrize("machine", MACHINES)
async def test_holding_registers_int16_times_ten(mbpoll: str, sim: Simulation, machine: str) -> None:
    """``-t 4``: holding register i is round(signal i * 10) as int16 (saturating: the CNC's rpm)."""
    names = [name for name, _ in sim.signals(machine)]
    since = latest_ns(sim, machine)
    done = await poll(mbpoll, sim, machine, "-t", "4", "-r", "0", "-c", str(len(names)))
    shown = registers(done)
    assert sorted(shown) == list(range(len(names))), done.explain()
    read = {name: signed16(shown[i]) for i, name in enumerate(names)}
    matching_update(read, updates_since(sim, machine, since), lambda _n, v, r: r in int16_candidates(v), done)


@pytest.mark.parametrize("machine", MACHINES)
async def test_parts_counter_and_state_code(mbpoll: str, sim: Simulation, machine: str) -> None:
    """Holding 100-101 (uint32, high word first) and 102 (state code) in one read; then 100 as mbpoll's int."""
    since = latest_ns(sim, machine)
    done = await poll(mbpoll, sim, machine, "-t", "4", "-r", str(STATUS_REGISTERS), "-c", "3")
    shown = registers(done)
    assert sorted(shown) == [100, 101, 102], done.explain()
    parts = (int(shown[100]) << 16) | int(shown[101])
    read = {"parts_count": parts, "state_code": int(shown[102])}
    matching_update(read, updates_since(sim, machine, since), lambda _n, v, r: v == r, done)
    assert read["state_code"] in {0, 1, 2, 3}

    since = latest_ns(sim, machine)
    done = await poll(mbpoll, sim, machine, "-t", "4:int", "-B", "-r", str(STATUS_REGISTERS), "-c", "1")
    shown = registers(done)
    assert sorted(shown) == [100], done.explain()
    read = {"parts_count": int(shown[100])}
    matching_update(read, updates_since(sim, machine, since), lambda _n, v, r: v == r, done)


async def test_protocol_errors_reach_a_third_party_client(mbpoll: str, sim: Simulation) -> None:
    """Unknown unit: exception 0B; past the end of a table: 02; a write: 02, and it is counted."""
    port = str(sim.modbus.port)
    unknown = str(len(MACHINES) + 5)
    done = await run_client(mbpoll, "-m", "tcp", "-a", unknown, "-0", "-1", "-t", "4", "-p", port, "127.0.0.1")
    assert done.returncode != 0, done.explain()
    assert "Target device failed to respond" in done.stderr, done.explain()  # libmodbus text for 0x0B

    words = 2 * len(sim.signals("pump-1"))
    done = await poll(mbpoll, sim, "pump-1", "-t", "3", "-r", str(words), "-c", "1")
    assert done.returncode != 0, done.explain()
    assert "Illegal data address" in done.stderr, done.explain()

    writes = sim.write_count
    unit = str(sim.modbus.unit_id("pump-1"))
    done = await run_client(mbpoll, "-m", "tcp", "-a", unit, "-0", "-r", "0", "-t", "4", "-p", port, "127.0.0.1", "7")
    assert done.returncode != 0, done.explain()
    assert "Illegal data address" in done.stderr, done.explain()
    assert sim.write_count == writes + 1


async def test_cdab_word_order_reads_with_mbpoll_default(mbpoll: str) -> None:
    """``modbus_byte_order="CDAB"`` (low word first) is what mbpoll decodes without ``-B``."""
    async with Simulation(
        seed=1, machines=["pump-1"], update_interval=0.1, opcua_port=None, modbus_port=0, modbus_byte_order="CDAB"
    ) as sim:
        async with asyncio.timeout(5):
            await sim.wait_updates(2)
        names = [name for name, _ in sim.signals("pump-1")]
        since = latest_ns(sim, "pump-1")
        done = await poll(mbpoll, sim, "pump-1", "-t", "3:float", "-r", "0", "-c", str(len(names)))
        shown = registers(done)
        read = {name: shown[2 * i] for i, name in enumerate(names)}
        matching_update(read, updates_since(sim, "pump-1", since), lambda _n, v, s: f"{v:g}" == s, done)
