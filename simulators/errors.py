"""The simulator's exception tree (it never imports the agent's, on purpose).

SimulatorError           a bad argument to the Python API or the CLI; the message carries the fix
├── UnknownMachineError  no machine with that id (also a KeyError, as lookups usually are)
└── ScenarioError        a scenario file is wrong; every problem names file, line, key and fix
"""

from __future__ import annotations

from dataclasses import dataclass


class SimulatorError(Exception):
    """A bad argument or request; the message says what is wrong and how to fix it."""


class UnknownMachineError(SimulatorError, KeyError):
    """No machine with that id; ``machine_id`` is the id asked for, the message lists the known ones."""

    def __init__(self, machine_id: str, known: list[str]) -> None:
        self.machine_id = machine_id
        super().__init__(f"unknown machine {machine_id!r}. Fix: use one of {known}")

    def __str__(self) -> str:  # KeyError would quote the whole message
        return str(self.args[0])


@dataclass(frozen=True, slots=True)
class Problem:
    """One thing wrong in a scenario: where (dotted key, 1-based line if known) and what to do."""

    key: str
    message: str
    line: int | None = None

    def __str__(self) -> str:
        where = f"line {self.line}: " if self.line is not None else ""
        return f"{where}{self.key or '(top level)'}: {self.message}"


class ScenarioError(SimulatorError):
    """A scenario is wrong; ``problems`` lists every mistake so all are fixed in one go.

    Raised before anything starts: no server listens, no file is written.
    """

    def __init__(self, file: str, problems: list[Problem]) -> None:
        self.file = file
        self.problems = problems
        detail = "\n".join(f"  - {file}: {p}" for p in problems)
        super().__init__(f"{file}: {len(problems)} problem(s) in the scenario:\n{detail}")
