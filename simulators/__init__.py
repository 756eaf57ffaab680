"""Bundled machine simulators: physics, faults and ground truth, served over real OPC UA and Modbus.

Never imports ``edge_agent`` or ``connectors``: a bug shared with the agent must not be able to
make a test pass. See ``simulators/README.md`` for the register map and node ids.
"""

from simulators.errors import ScenarioError, SimulatorError, UnknownMachineError
from simulators.faults import FAULT_KINDS, Fault
from simulators.physics import DEFAULT_PLANT, MACHINE_KINDS, MachineState
from simulators.plant import Plant, Reading
from simulators.register_map import NAMESPACE_URI, PlantDescription, describe
from simulators.scenario import Scenario, load_scenario, parse_scenario
from simulators.simulation import Simulation

__all__ = [
    "DEFAULT_PLANT",
    "FAULT_KINDS",
    "MACHINE_KINDS",
    "NAMESPACE_URI",
    "Fault",
    "MachineState",
    "Plant",
    "PlantDescription",
    "Reading",
    "Scenario",
    "ScenarioError",
    "Simulation",
    "SimulatorError",
    "UnknownMachineError",
    "describe",
    "load_scenario",
    "parse_scenario",
]
