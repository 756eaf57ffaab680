"""The simulator's exception tree (it never imports the agent's, on purpose).

SimulatorError           a bad argument to the Python API or the CLI; the message carries the fix
└── ScenarioError        a scenario file is wrong; carries file, key path and the fix
"""

from __future__ import annotations


class SimulatorError(Exception):
    """A bad argument or request; the message says what is wrong and how to fix it."""


class ScenarioError(SimulatorError):
    """A scenario is wrong. ``file`` and ``key`` locate it; nothing was started."""

    def __init__(self, file: str, key: str, problem: str) -> None:
        self.file = file
        self.key = key
        self.problem = problem
        super().__init__(f"{file}: {key}: {problem}")
