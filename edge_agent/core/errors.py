"""The agent's exception tree, written at the top so every caller knows what it may catch.

EdgeAgentError
├── ConfigError            a config file is wrong; carries file, location and the fix
├── ConnectorError         talking to a machine failed
│   ├── ConnectError       could not open (or lost) the connection
│   ├── ReadTimeout        the machine did not answer in time
│   └── DeviceError        the machine answered with an error for the whole request
├── SinkError              a destination (broker, database) refused or failed
├── PayloadError           a message is not a valid telemetry payload
└── ModelError             a model could not be trained, loaded or scored

Library exceptions are translated into these only at connector and sink boundaries,
with ``raise ... from exc`` so the original stays visible in debug logs.
"""

from __future__ import annotations


class EdgeAgentError(Exception):
    """Base class of every error the agent raises on purpose."""


class ConfigError(EdgeAgentError):
    """A configuration problem, reported as ``file:line: key: problem. Fix: ...``.

    ``problems`` holds one line per problem so a file with three mistakes is fixed in one go.
    """

    def __init__(self, file: str, problems: list[str]) -> None:
        self.file = file
        self.problems = problems
        detail = "\n".join(f"  - {p}" for p in problems)
        super().__init__(f"{file}: {len(problems)} problem(s) in the configuration:\n{detail}")


class ConnectorError(EdgeAgentError):
    """Talking to a machine failed; ``machine`` names it."""

    def __init__(self, machine: str, message: str) -> None:
        self.machine = machine
        super().__init__(f"machine {machine!r}: {message}")


class ConnectError(ConnectorError):
    """The connection could not be opened or was lost."""


class ReadTimeout(ConnectorError):
    """The machine did not answer within the configured timeout."""


class DeviceError(ConnectorError):
    """The machine answered, but with an error that spoils the whole request."""


class SinkError(EdgeAgentError):
    """A destination (MQTT broker, InfluxDB) refused or failed."""


class PayloadError(EdgeAgentError):
    """A message is not a valid telemetry payload; the reason says which part and why."""


class ModelError(EdgeAgentError):
    """A model could not be trained, loaded or scored."""
