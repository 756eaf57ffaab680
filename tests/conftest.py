"""Shared fixtures: real servers on loopback (rigs in tests/helpers/servers.py) for every test folder."""

from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.helpers.servers import InfluxDB1, Mosquitto, VictoriaMetrics, running


@pytest.fixture(autouse=True)
def own_state_directory(tmp_path_factory: pytest.TempPathFactory, monkeypatch: pytest.MonkeyPatch) -> Path:
    """Every test (and every agent process it starts) keeps its outbox in its own folder.

    The outbox's default location is ``$STATE_DIRECTORY`` (what systemd gives the service); without
    this, agents of different tests would share ``~/.local/state/edge-agent`` and its backlog.
    """
    state = tmp_path_factory.mktemp("state")
    monkeypatch.setenv("STATE_DIRECTORY", str(state))
    return state


@pytest.fixture(scope="session")
def mosquitto(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Mosquitto]:
    """One broker for the session. Do not stop it; isolate tests with ``unique_name()`` topic prefixes."""
    with running(Mosquitto(tmp_path_factory.mktemp("mosquitto"))) as server:
        assert isinstance(server, Mosquitto)
        yield server


@pytest.fixture
def fresh_mosquitto(tmp_path: Path) -> Iterator[Mosquitto]:
    """A broker of this test alone: it may stop, kill and restart it (same port)."""
    with running(Mosquitto(tmp_path / "mosquitto")) as server:
        assert isinstance(server, Mosquitto)
        yield server


@pytest.fixture(scope="session")
def influxdb1(tmp_path_factory: pytest.TempPathFactory) -> Iterator[InfluxDB1]:
    """One InfluxDB 1.x for the session. Do not stop it; give each test its own database."""
    with running(InfluxDB1(tmp_path_factory.mktemp("influxdb1"))) as server:
        assert isinstance(server, InfluxDB1)
        yield server


@pytest.fixture
def fresh_influxdb1(tmp_path: Path) -> Iterator[InfluxDB1]:
    """An InfluxDB 1.x of this test alone: it may stop and restart it (same port, data kept)."""
    with running(InfluxDB1(tmp_path / "influxdb1")) as server:
        assert isinstance(server, InfluxDB1)
        yield server


@pytest.fixture(scope="session")
def victoria_metrics(tmp_path_factory: pytest.TempPathFactory) -> Iterator[VictoriaMetrics]:
    """One VictoriaMetrics for the session; isolate tests by a unique tag value (e.g. machine)."""
    with running(VictoriaMetrics(tmp_path_factory.mktemp("victoria-metrics"))) as server:
        assert isinstance(server, VictoriaMetrics)
        yield server


@pytest.fixture
def fresh_victoria_metrics(tmp_path: Path) -> Iterator[VictoriaMetrics]:
    """A VictoriaMetrics of this test alone: it may stop and restart it (same port, data kept)."""
    with running(VictoriaMetrics(tmp_path / "victoria-metrics")) as server:
        assert isinstance(server, VictoriaMetrics)
        yield server
