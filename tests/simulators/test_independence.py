"""The simulators never import the agent: one shared bug must not be able to make a test pass."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

SIMULATORS = Path(__file__).parents[2] / "simulators"
FORBIDDEN = ("edge_agent", "connectors", "models")


def test_no_simulator_module_imports_the_agent() -> None:
    offenders = []
    for path in sorted(SIMULATORS.rglob("*.py")):
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            names = []
            if isinstance(node, ast.Import):
                names = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
                names = [node.module]
            offenders += [f"{path.name}: {n}" for n in names if n.split(".")[0] in FORBIDDEN]
    assert offenders == []


def test_importing_simulators_loads_no_agent_module() -> None:
    code = (
        "import sys, simulators, simulators.cli, simulators.dataset, simulators.record; "
        f"print([m for m in sys.modules if m.split('.')[0] in {FORBIDDEN!r}])"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=60)
    assert result.stdout.strip() == "[]"
