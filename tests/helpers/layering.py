"""Which package may import which: the one table of the project's layers, and the checker that reads it.

Lowest first. ``edge_agent.core`` is the leaf; ``connectors`` and ``models`` build on it alone; the agent
rooms come in a fixed order and each may import the core, connectors, models and the rooms before it.
The simulators import nothing of the project: they are the machines the agent is tested against, so a
bug they shared with the agent could make a test pass. A module may always import its own package.

The checker reads the source with ``ast``, so it sees every import: at the top, inside functions (the
lazy ones), and under ``if TYPE_CHECKING:``. docs/architecture.md (Packages) points here.
"""

from __future__ import annotations

import ast
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path

CORE = "edge_agent.core"
ROOT = "edge_agent"
"""The package ``edge_agent`` itself: its ``__init__`` holds only ``__version__``, which any room may read."""

ROOMS = (
    "edge_agent.alerts",
    "edge_agent.delivery",
    "edge_agent.ingest",
    "edge_agent.web",
    "edge_agent.runtime",
    "edge_agent.commands",
)
"""The agent's rooms, lowest first: each may import the rooms before it, never one after it."""


def _room_rules() -> dict[str, frozenset[str]]:
    rules = {}
    for position, room in enumerate(ROOMS):
        rules[room] = frozenset({CORE, "connectors", "models", ROOT, *ROOMS[:position]})
    return rules


ALLOWED: Mapping[str, frozenset[str]] = {
    CORE: frozenset(),
    "connectors": frozenset({CORE}),
    "models": frozenset({CORE}),
    "simulators": frozenset(),
    ROOT: frozenset(),
    **_room_rules(),
    # ``edge-agent demo`` runs the bundled simulated plant: the arrow points from the agent's top room
    # to the simulators, never back.
    "edge_agent.commands": frozenset({CORE, "connectors", "models", ROOT, *ROOMS[:-1], "simulators"}),
    # ``python -m edge_agent`` is the command line, so it stands where the commands room stands.
    "edge_agent.__main__": frozenset({CORE, "connectors", "models", ROOT, *ROOMS, "simulators"}),
}
"""Layer -> the other layers its modules may import (its own layer is always allowed)."""

PACKAGES = ("edge_agent", "connectors", "models", "simulators")
"""The top-level folders whose modules the checker reads."""


@dataclass(frozen=True)
class Violation:
    """One import that goes the wrong way: ``importer`` (a path relative to the tree) imports ``imported``."""

    importer: str
    imported: str
    line: int

    def __str__(self) -> str:
        return f"{self.importer}:{self.line}: imports {self.imported}"


def layer_of(module: str) -> str | None:
    """The layer a dotted module name belongs to (the longest matching entry of ``ALLOWED``), or None."""
    best: str | None = None
    for layer in ALLOWED:
        if (module == layer or module.startswith(layer + ".")) and (best is None or len(layer) > len(best)):
            best = layer
    return best


def module_name(path: Path, root: Path) -> str:
    """``edge_agent/alerts/sink.py`` -> ``edge_agent.alerts.sink``; a package's ``__init__`` is the package."""
    parts = list(path.relative_to(root).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def imported_modules(tree: ast.AST, module: str, is_package: bool) -> Iterable[tuple[str, int]]:
    """Every project-relevant ``(dotted name, line)`` that ``tree`` imports, relative imports resolved.

    ``from X import name`` yields ``X``, except ``from edge_agent import name`` which yields
    ``edge_agent.name``: ``name`` may be a room (``from edge_agent import runtime``), and what is not a
    room (``__version__``) falls back to the root package in ``layer_of``.
    """
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            for alias in node.names:
                yield alias.name, node.lineno
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = module.split(".")
                drop = node.level - 1 if is_package else node.level
                anchor = anchor[: len(anchor) - drop] if drop else anchor
                base = ".".join([*anchor, base] if base else anchor)
            if base == ROOT:
                for alias in node.names:
                    yield f"{ROOT}.{alias.name}", node.lineno
            else:
                yield base, node.lineno


def find_violations(root: Path, packages: Iterable[str] = PACKAGES) -> list[Violation]:
    """Every import under ``root`` that ``ALLOWED`` forbids, sorted by file and line."""
    found: set[Violation] = set()
    for package in packages:
        for path in sorted((root / package).rglob("*.py")):
            module = module_name(path, root)
            importer_layer = layer_of(module)
            if importer_layer is None:
                continue
            allowed = ALLOWED[importer_layer] | {importer_layer}
            tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
            for imported, line in imported_modules(tree, module, path.name == "__init__.py"):
                target = layer_of(imported)
                if target is not None and target not in allowed:
                    found.add(Violation(path.relative_to(root).as_posix(), imported, line))
    return sorted(found, key=lambda violation: (violation.importer, violation.line, violation.imported))
