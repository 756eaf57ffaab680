"""Shared fixtures: real servers on loopback (tests/servers.py) for every test folder."""

from pathlib import Path

import pytest

pytest_plugins = ["tests.helpers.servers"]


@pytest.fixture(autouse=True)
def own_state_directory(tmp_path_factory: pytest.TempPathFactory, monkeypatch: pytest.MonkeyPatch) -> Path:
    """Every test (and every agent process it starts) keeps its outbox in its own folder.

    The outbox's default location is ``$STATE_DIRECTORY`` (what systemd gives the service); without
    this, agents of different tests would share ``~/.local/state/edge-agent`` and its backlog.
    """
    state = tmp_path_factory.mktemp("state")
    monkeypatch.setenv("STATE_DIRECTORY", str(state))
    return state
