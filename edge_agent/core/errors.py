"""The agent's exception tree, written at the top so every caller knows what it may catch.

EdgeAgentError
├── ConfigError            a config file is wrong; carries file, location and the fix
├── ConnectorError         talking to a machine failed
│   ├── ConnectError       could not open (or lost) the connection
│   │   └── CertificateRefused   the OPC UA server's certificate is not trusted
│   ├── ReadTimeout        the machine did not answer in time
│   └── DeviceError        the machine answered with an error for the whole request
├── DecodeError            Modbus registers that cannot become a value (also a ValueError)
├── UnsupportedValue       an OPC UA value a sample cannot carry (also a ValueError)
├── EndpointChoiceError    no OPC UA endpoint fits the configured security
├── PkiError               a trust-store operation that cannot be done
├── SinkError              a destination (broker, database) refused or failed
├── PayloadError           a message is not a valid telemetry payload
├── CommandError           a command sent to the agent cannot be carried out (also a ValueError)
├── LoginRequired          a status-page request carries no valid credential
├── Forbidden              a state-changing status-page request from another site, or not JSON
└── ModelError             a model could not be trained, loaded or scored

Library exceptions are translated into these only at connector and sink boundaries,
with ``raise ... from exc`` so the original stays visible in debug logs. Errors raised and
caught inside one module stay private to it.
"""

from __future__ import annotations

import math


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


class CertificateRefused(ConnectError):
    """The server's certificate is not trusted; ``detail`` is the message with the command that trusts it."""

    def __init__(self, machine: str, detail: str, fingerprint: str) -> None:
        super().__init__(machine, detail)
        self.detail = detail
        self.fingerprint = fingerprint


class DecodeError(EdgeAgentError, ValueError):
    """Registers that cannot be turned into a value; the message is the sample's bad-quality reason."""


class UnsupportedValue(EdgeAgentError, ValueError):
    """A value the agent cannot carry (arrays, structures, ...); the message says what it was."""


class EndpointChoiceError(EdgeAgentError):
    """No offered endpoint fits the config; the message lists the offered ones and the fix."""

    def __init__(self, message: str, *, only_none: bool = False) -> None:
        super().__init__(message)
        self.only_none = only_none
        """The server offers only security None (and the config asked for security)."""


class PkiError(EdgeAgentError):
    """A trust-store operation that cannot be done; the message says why and what to do."""


class SinkError(EdgeAgentError):
    """A destination (MQTT broker, InfluxDB) refused or failed."""


class PayloadError(EdgeAgentError):
    """A message is not a valid telemetry payload; the reason says which part and why."""


class CommandError(EdgeAgentError, ValueError):
    """A command that cannot be carried out; the message goes into the reply and the log."""


class LoginRequired(EdgeAgentError):
    """The request carries no valid credential; the message says how to give one."""

    def __init__(self, message: str, challenge: str) -> None:
        super().__init__(message)
        self.challenge = challenge


class Forbidden(EdgeAgentError):
    """A state-changing request from another site or not sent as JSON."""


class TooManyAttempts(EdgeAgentError):
    """The client guessed wrong too often; it may try again after ``retry_after`` seconds."""

    def __init__(self, retry_after: float) -> None:
        super().__init__(
            f"too many wrong logins from this address; try again in {math.ceil(retry_after)} s "
            "(each further wrong one doubles the wait)"
        )
        self.retry_after = retry_after


class ModelError(EdgeAgentError):
    """A model could not be trained, loaded or scored."""
