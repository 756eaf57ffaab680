"""One protocol's parts as the rest of the agent finds them: machine model, tag model, discoverer, doctor.

Each protocol folder has a ``protocol.py`` whose ``PROTOCOL`` names its parts; the registry in
``connectors/__init__.py`` finds it from the machine model in the ``MachineConfig`` union, so a
new protocol is listed in one place. The discoverer and the doctor are made on first use: they
pull in the protocol's library (asyncua, pymodbus), which loading a config must not pay for.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable
from dataclasses import dataclass
from functools import cached_property
from typing import Any, get_args

from connectors.base import MachineConfigBase
from connectors.diagnosis import MachineDoctor
from connectors.discovery import Discoverer
from edge_agent.core.config_base import StrictModel


@dataclass(frozen=True)
class ProtocolEntry:
    """What the agent's commands need of one protocol, found by its ``type`` key."""

    machine: type[MachineConfigBase]
    """The machine model, with ``type: Literal["<protocol>"]`` and ``tags: list[<tag model>]``."""
    make_discoverer: Callable[[], Discoverer]
    make_doctor: Callable[[], MachineDoctor]

    @property
    def name(self) -> str:
        """The protocol's name: the ``type`` key of its machine sections, e.g. ``opcua``."""
        (literal,) = get_args(self.machine.model_fields["type"].annotation)
        return str(literal)

    @property
    def tag(self) -> type[StrictModel]:
        """The model of one entry of its ``tags`` list."""
        (model,) = get_args(self.machine.model_fields["tags"].annotation)
        if not (isinstance(model, type) and issubclass(model, StrictModel)):
            raise TypeError(f"{self.machine.__name__}.tags must be a list of one tag model")
        return model

    @cached_property
    def discoverer(self) -> Discoverer:
        """Its part of ``edge-agent discover``."""
        return self.make_discoverer()

    @cached_property
    def doctor(self) -> MachineDoctor:
        """Its part of ``edge-agent doctor``."""
        return self.make_doctor()


def protocols_of(machine_config: Any) -> dict[str, ProtocolEntry]:
    """The entry of every machine model in ``machine_config`` (``Annotated[A | B, …]``), by ``type``.

    Each model's entry is ``PROTOCOL`` in the ``protocol`` module next to the model's own module.
    """
    union, *_metadata = get_args(machine_config)
    out: dict[str, ProtocolEntry] = {}
    for model in get_args(union) or (union,):
        package = model.__module__.rpartition(".")[0]
        entry = importlib.import_module(f"{package}.protocol").PROTOCOL
        if not isinstance(entry, ProtocolEntry) or entry.machine is not model:
            raise TypeError(f"{package}.protocol.PROTOCOL must be the ProtocolEntry of {model.__name__}")
        out[entry.name] = entry
    return out
