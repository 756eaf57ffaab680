"""Every import goes down the layers of tests/helpers/layering.py: a lower layer never imports a higher one."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from tests.helpers.layering import PACKAGES, Violation, find_violations

ROOT = Path(__file__).parents[1]


def test_no_module_imports_a_higher_layer() -> None:
    assert [str(violation) for violation in find_violations(ROOT)] == []


def _write(root: Path, relative: str, text: str = "") -> None:
    path = root / relative
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text, encoding="utf-8")


def test_a_connector_importing_the_runtime_is_reported(tmp_path: Path) -> None:
    for package in PACKAGES:
        _write(tmp_path, f"{package}/__init__.py")
    _write(tmp_path, "edge_agent/core/errors.py")
    _write(tmp_path, "edge_agent/runtime/agent.py")
    _write(tmp_path, "connectors/fine.py", "from edge_agent.core.errors import ConnectError\n")
    _write(
        tmp_path,
        "connectors/wrong.py",
        "def lazy() -> None:\n    from edge_agent.runtime import agent\n",
    )
    assert find_violations(tmp_path) == [Violation("connectors/wrong.py", "edge_agent.runtime", 2)]


def test_imports_under_type_checking_and_relative_imports_count(tmp_path: Path) -> None:
    for package in PACKAGES:
        _write(tmp_path, f"{package}/__init__.py")
    _write(tmp_path, "edge_agent/web/server.py")
    _write(
        tmp_path,
        "edge_agent/alerts/sink.py",
        "from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n    from ..web import server\n",
    )
    _write(tmp_path, "models/score.py", "import simulators.plant\nfrom edge_agent import __version__\n")
    _write(tmp_path, "simulators/plant.py", "from . import faults\nimport models\n")
    assert [str(v) for v in find_violations(tmp_path)] == [
        "edge_agent/alerts/sink.py:3: imports edge_agent.web",
        "models/score.py:1: imports simulators.plant",
        "models/score.py:2: imports edge_agent.__version__",
        "simulators/plant.py:2: imports models",
    ]


def test_importing_simulators_loads_no_agent_module() -> None:
    """The table is about source; this is the same rule at run time, through every import the package makes."""
    forbidden = ("edge_agent", "connectors", "models")
    code = (
        "import sys, simulators, simulators.cli, simulators.dataset, simulators.record; "
        f"print([m for m in sys.modules if m.split('.')[0] in {forbidden!r}])"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=60)
    assert result.stdout.strip() == "[]"
