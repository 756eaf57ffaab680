"""Injecting and clearing faults on a running Simulation: values change on the wire, truth is stamped."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from datetime import UTC, datetime, timedelta

import pytest

from simulators import MachineState, Simulation, SimulatorError, UnknownMachineError
from simulators.scenario import parse_scenario
from simulators.truth import timeline


async def test_inject_and_clear_fault_on_a_running_simulation() -> None:
    async with Simulation(seed=5, machines=["pump-1"], update_interval=0.01, opcua_port=None) as sim:
        sim.set_mode("pump-1", "running")
        async with asyncio.timeout(10):
            await sim.wait_updates(20)
            before = [v for _, v in sim.served("modbus", "pump-1", "vibration_rms")[-10:]]
            fault = sim.inject_fault("pump-1", "imbalance", severity=1.0)
            await sim.wait_updates(20)
            during = [v for _, v in sim.served("modbus", "pump-1", "vibration_rms")[-10:]]
            assert min(during) > max(before) + 3.0
            assert fault.start_ns is not None
            served_times = [t for t, _ in sim.served("modbus", "pump-1", "vibration_rms")]
            assert fault.start_ns in served_times  # the first update served with the fault
            assert sim.clear_fault("pump-1", "imbalance") == 1
            await sim.wait_updates(20)
            after = [v for _, v in sim.served("modbus", "pump-1", "vibration_rms")[-10:]]
            assert max(after) < min(during) - 3.0
        truth = sim.ground_truth()
        assert [(f.machine_id, f.fault) for f in truth] == [("pump-1", "imbalance")]
        assert truth[0].end_ns is not None
        assert truth[0].start_ns is not None
        assert truth[0].end_ns > truth[0].start_ns
        assert truth[0].to_dict()["progression"] == "sudden"
        (entry,) = timeline(truth)
        start = datetime.fromisoformat(str(entry["start"]))
        assert start == datetime(1970, 1, 1, tzinfo=UTC) + timedelta(microseconds=truth[0].start_ns // 1_000_000 * 1000)


async def test_bad_injection_is_refused_and_changes_nothing() -> None:
    async with Simulation(seed=5, opcua_port=None, modbus_port=None) as sim:
        with pytest.raises(SimulatorError, match="does not apply to a press"):
            sim.inject_fault("press-1", "cavitation", severity=0.5)
        with pytest.raises(SimulatorError, match="ramp"):
            sim.inject_fault("pump-1", "bearing_wear", ramp="soon")
        with pytest.raises(SimulatorError, match="unknown state"):
            sim.set_mode("pump-1", "exploded")
        assert sim.ground_truth() == []


async def test_held_mode_wins_over_scenario_windows_and_releases() -> None:
    scenario = parse_scenario("machines: [pump-1]\nmodes:\n  - {machine: pump-1, state: idle, at: 0s}\n")
    async with Simulation(scenario=scenario, update_interval=0.01, opcua_port=None, modbus_port=None) as sim:
        pump = sim.plant.machine("pump-1")
        async with asyncio.timeout(5):
            await sim.wait_updates(2)
            states = [pump.state]
            sim.set_mode("pump-1", "off")
            await sim.wait_updates(2)
            states.append(pump.state)
            sim.set_mode("pump-1", None)
            await sim.wait_updates(2)
            states.append(pump.state)
        assert states == [MachineState.IDLE, MachineState.OFF, MachineState.IDLE]


async def test_set_load_moves_current_at_once() -> None:
    async with Simulation(
        machines=["pump-1"], update_interval=0.01, time_scale=10, opcua_port=None, modbus_port=None
    ) as sim:
        sim.set_mode("pump-1", "running")
        sim.set_load("pump-1", 0.25)
        async with asyncio.timeout(5):
            await sim.wait_updates(30)  # 3 s simulated: the speed lag has settled
            low = sim.plant.readings()["pump-1"].values["motor_current"]
            sim.set_load("pump-1", 1.0)
            await sim.wait_updates(1)  # one 0.1 s step: current follows flow at once
        high = sim.plant.readings()["pump-1"].values["motor_current"]
        assert high > low + 3
        with pytest.raises(SimulatorError, match="between 0 and 1"):
            sim.set_load("pump-1", 2.0)


async def test_unknown_machines_are_one_error_everywhere() -> None:
    sim = Simulation(opcua_port=None)
    calls: list[Callable[[], object]] = [
        lambda: sim.signals("robot-1"),
        lambda: sim.set_mode("robot-1", "off"),
        lambda: sim.set_load("robot-1", 0.5),
        lambda: sim.served("modbus", "robot-1", "flow"),
        lambda: sim.modbus.unit_id("robot-1"),
        lambda: sim.inject_fault("robot-1", "leak"),
        lambda: sim.clear_fault("robot-1"),
        lambda: sim.describe().machine("robot-1"),
    ]
    for call in calls:
        with pytest.raises(UnknownMachineError, match=r"unknown machine 'robot-1'\. Fix: use one of") as info:
            call()
        assert isinstance(info.value, KeyError)  # lookups stay KeyErrors for code that expects one
