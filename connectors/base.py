"""What every connector shares: the machine config base, the ``Connector`` protocol, its state.

A connector turns one machine's config into ``Batch``es of ``Sample``s. It never publishes,
stores or writes to a machine. It never raises for one bad tag: that tag gets bad quality and
the rest of the batch goes on. Whole-request failures raise a ``ConnectorError`` subclass so the
runtime can reconnect with backoff.
"""

from __future__ import annotations

from typing import Protocol, Self

from pydantic import Field, model_validator

from edge_agent.core.config_base import MACHINE_ID_PATTERN, StrictModel
from edge_agent.core.connection import ConnectionState
from edge_agent.core.durations import Duration
from edge_agent.core.identifiers import TOPIC_WORD_PATTERN
from edge_agent.core.samples import Batch

POLL_BUDGET = 0.9
"""Share of a machine's ``timeout`` one ``read()`` may use, so its batch is out before the runtime gives up."""


class MachineConfigBase(StrictModel):
    """Keys every machine has, whatever its protocol."""

    id: str = Field(pattern=MACHINE_ID_PATTERN, description="Unique machine id, used in topics and tags.")
    description: str | None = None
    area: str | None = Field(
        default=None, pattern=TOPIC_WORD_PATTERN, description="Overrides site.area for this machine."
    )
    line: str | None = Field(
        default=None, pattern=TOPIC_WORD_PATTERN, description="Overrides site.line for this machine."
    )
    enabled: bool = True
    interval: Duration = Field(default=1.0, le=86400, description="Time between polls (at most a day).")
    timeout: Duration | None = Field(default=None, description="Time one poll may take; default 80 % of the interval.")

    @model_validator(mode="after")
    def _timing_is_sane(self) -> Self:
        if self.interval <= 0:
            raise ValueError(f"interval must be greater than 0 (got {self.interval:g} s). Fix: set e.g. interval: 1s")
        if self.timeout is not None and self.timeout <= 0:
            raise ValueError(f"timeout must be greater than 0 (got {self.timeout:g} s). Fix: set e.g. timeout: 500ms")
        if self.timeout is not None and self.timeout >= self.interval:
            raise ValueError(
                f"timeout ({self.timeout:g} s) must be shorter than interval ({self.interval:g} s), "
                "or polls would pile up. Fix: lower timeout or raise interval"
            )
        return self

    @property
    def effective_timeout(self) -> float:
        """The timeout for one poll: configured, or 80 % of the interval."""
        return self.timeout if self.timeout is not None else self.interval * 0.8


class TagConfig(Protocol):
    """What every protocol's tag model has, for checks across protocols (unique names per machine)."""

    @property
    def name(self) -> str:
        """The tag's name, unique within its machine."""
        ...


class Connector(Protocol):
    """One machine's link. Created closed; the runtime calls connect, read (repeatedly), close."""

    @property
    def machine_id(self) -> str:
        """The id of the machine this connector reads."""
        ...

    @property
    def state(self) -> ConnectionState:
        """The link's current state, for status and metrics."""
        ...

    async def connect(self) -> None:
        """Open the link. Raises ``ConnectError`` when the machine cannot be reached."""
        ...

    async def read(self) -> Batch:
        """Read every configured tag once. Raises ``ConnectorError`` only if the whole poll failed."""
        ...

    async def close(self) -> None:
        """Close the link. Idempotent; never raises."""
        ...
