"""What a protocol adds to ``edge-agent doctor``, so the command itself knows no protocol.

The doctor connects to every machine and reads each tag once, the same way for all protocols.
What differs is owned here per protocol: a connector that leaves no trace on disk (an OPC UA
probe neither trusts on first use nor makes a key), the extra rows the connect attempt can tell
(OPC UA security), and the fix for a failure in the protocol's own words.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Protocol

from connectors.base import Connector


@dataclass(frozen=True)
class Row:
    """One line of the doctor's table."""

    name: str
    ok: bool
    detail: str
    fix: str = ""


class MachineDoctor(Protocol):
    """One protocol's checks; ``machine`` is always that protocol's machine model."""

    def probe(self, machine: Any) -> Connector:
        """The machine's connector, changing nothing on disk that the agent would not."""
        ...

    def rows(self, machine: Any, connector: Connector, connected: bool, failure: str | None) -> list[Row]:
        """Rows beyond "connects and reads", from what ``connector`` saw (``failure``: why it failed, if it did)."""
        ...

    def fix(self, machine: Any, reason: str) -> str | None:
        """The fix for a failed connect or read, when the protocol knows better than the generic one."""
        ...

    def where(self, machine: Any) -> str:
        """Where the machine is, for a fix: an endpoint, ``host:port``."""
        ...
