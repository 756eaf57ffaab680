"""deploy/: compose stack, image, broker, Grafana provisioning, Telegraf and systemd unit.

Docker cannot run in CI, so everything that can be checked without it is checked here: the
files parse, every command is a real subcommand, the agent config of the stack loads, the
dashboard asks for what docs/payloads.md says exists, Mosquitto starts with its config (when
the binary is installed) and the unit passes ``systemd-analyze verify`` (when available).
"""

from __future__ import annotations

import argparse
import getpass
import json
import re
import shutil
import socket
import subprocess
import tomllib
from pathlib import Path
from typing import Any

import pytest
import yaml

from edge_agent.commands.cli import build_parser
from edge_agent.runtime.loader import load_config
from simulators.cli import build_parser as build_sim_parser
from tests.helpers.servers import tcp_accepts
from tests.helpers.waiting import wait_until_sync

REPO = Path(__file__).resolve().parents[2]
DEPLOY = REPO / "deploy"
PROVISIONING = DEPLOY / "grafana" / "provisioning"
UNIT = DEPLOY / "systemd" / "edge-agent.service"


def subcommands(parser: argparse.ArgumentParser) -> set[str]:
    (sub,) = (a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    return set(sub.choices)


@pytest.fixture(scope="module")
def compose() -> dict[str, Any]:
    data: dict[str, Any] = yaml.safe_load((DEPLOY / "compose.yaml").read_text())
    return data


def point_table(text: str, heading: str) -> dict[str, set[str]]:
    """Measurement, tags and fields from the first table after ``heading`` in docs/payloads.md."""
    table = text.split(heading, 1)[1].split("\n\n", 2)[1]
    if not table.startswith("|"):  # a sentence between the heading and the table
        table = text.split(heading, 1)[1].split("\n\n", 3)[2]
    parts: dict[str, set[str]] = {"measurement": set(), "tag": set(), "field": set()}
    for row in table.splitlines():
        cells = [c.strip() for c in row.strip("|").split("|")]
        if len(cells) >= 2 and cells[0] in parts:
            parts[cells[0]].update(re.findall(r"`([^`]+)`", cells[1]))
    return parts


@pytest.fixture(scope="module")
def points() -> dict[str, dict[str, set[str]]]:
    """Per measurement, its tags and fields, from the point tables of docs/payloads.md."""
    text = (REPO / "docs" / "payloads.md").read_text()
    found = {}
    for heading in ("## The InfluxDB point", "### The `alerts` point", "### The `anomaly_score` point"):
        parts = point_table(text, heading)
        (measurement,) = parts["measurement"]
        found[measurement] = parts
    assert set(found) == {"telemetry", "alerts", "anomaly_score"}
    assert {"machine", "tag"} <= found["telemetry"]["tag"]
    assert {"value", "quality"} <= found["telemetry"]["field"]
    assert {"machine", "event", "severity"} <= found["alerts"]["tag"]
    assert {"summary", "alert_id", "active"} <= found["alerts"]["field"]
    assert {"machine", "detector"} <= found["anomaly_score"]["tag"]
    assert {"score", "threshold", "level"} <= found["anomaly_score"]["field"]
    return found


@pytest.fixture(scope="module")
def point(points: dict[str, dict[str, set[str]]]) -> dict[str, set[str]]:
    """The telemetry point (what the Telegraf alternative writes)."""
    return points["telemetry"]


def agent_services(compose: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {
        name: svc
        for name, svc in compose["services"].items()
        if svc.get("build", {}).get("dockerfile") == "deploy/Containerfile"
    }


# --- compose -------------------------------------------------------------------------------


def test_compose_has_the_whole_stack(compose: dict[str, Any]) -> None:
    assert {"mosquitto", "influxdb", "grafana", "agent", "ingest"} <= set(compose["services"])
    assert compose["services"]["influxdb"]["image"].startswith("influxdb:2")
    assert {"agent", "ingest", "simulator"} <= set(agent_services(compose))


def test_every_service_command_is_a_real_subcommand(compose: dict[str, Any]) -> None:
    agent_commands, sim_commands = subcommands(build_parser()), subcommands(build_sim_parser())
    services = agent_services(compose)
    for name, svc in services.items():
        command = svc["command"]
        entrypoint = svc.get("entrypoint", ["edge-agent"])
        assert entrypoint in (["edge-agent"], ["edge-sim"]), name
        known = agent_commands if entrypoint == ["edge-agent"] else sim_commands
        assert command[0] in known, f"{name}: {command[0]!r} is not a subcommand of {entrypoint[0]}"
        # The whole command line parses.
        parser = build_parser() if entrypoint == ["edge-agent"] else build_sim_parser()
        parser.parse_args(command)
    assert services["agent"]["command"][0] == "run"
    assert services["ingest"]["command"][0] == "ingest"


def test_containerfile_default_command_is_real() -> None:
    text = (DEPLOY / "Containerfile").read_text()
    entry = json.loads(re.search(r"^ENTRYPOINT (.+)$", text, re.M)[1])  # type: ignore[index]
    cmd = json.loads(re.search(r"^CMD (.+)$", text, re.M)[1])  # type: ignore[index]
    assert entry == ["edge-agent"]
    build_parser().parse_args(cmd)


def test_config_files_mounted_into_agent_services_load(
    compose: dict[str, Any], monkeypatch: pytest.MonkeyPatch
) -> None:
    for name in ("INFLUX_TOKEN", "EDGE_WEB_PASSWORD"):
        monkeypatch.setenv(name, "x" * 24)
    for name, svc in agent_services(compose).items():
        mounts = dict(v.split(":")[:2][::-1] for v in svc.get("volumes", []) if v.startswith("./"))
        for arg in svc["command"][1:]:
            if arg.startswith("/etc/edge-agent/"):
                assert arg in mounts, f"{name}: {arg} is not mounted"
                config = load_config(str(DEPLOY / mounts[arg]))
                assert config.mqtt is not None
                assert config.mqtt.host == "mosquitto"
                assert config.influxdb is not None
                assert config.influxdb.url == "http://influxdb:8086"
                hosts = {str(getattr(m, "host", None) or getattr(m, "endpoint", "")) for m in config.machines}
                assert all("simulator" in h for h in hosts)


def test_host_paths_exist(compose: dict[str, Any]) -> None:
    for name, svc in compose["services"].items():
        for volume in svc.get("volumes", []):
            if volume.startswith("./"):
                assert (DEPLOY / volume.split(":")[0]).exists(), f"{name}: {volume}"
        build = svc.get("build")
        if build:
            context = DEPLOY / build["context"]
            assert (context / build["dockerfile"]).is_file()


def test_every_required_variable_has_an_example(compose: dict[str, Any]) -> None:
    text = (DEPLOY / "compose.yaml").read_text()
    required = set(re.findall(r"\$\{(\w+):\?", text))
    examples = {line.split("=", 1)[0] for line in (DEPLOY / ".env.example").read_text().splitlines() if "=" in line}
    assert required
    assert required <= examples


def test_containerfile_is_slim_and_unprivileged() -> None:
    text = (DEPLOY / "Containerfile").read_text()
    assert re.search(r"^ARG PYTHON_IMAGE=python:3\.11-slim$", text, re.M)
    final = text.rsplit("\nFROM ", 1)[1]
    assert "USER edge-agent" in final
    assert not re.search(r"apt-get|gcc|build-essential", text)
    for source in re.findall(r"^COPY (?:--\S+ )*(\S+) ", text, re.M):
        assert (REPO / source).exists(), source


# --- Mosquitto -----------------------------------------------------------------------------


def mosquitto_options() -> dict[str, str]:
    lines = (DEPLOY / "mosquitto" / "mosquitto.conf").read_text().splitlines()
    return dict(line.split(None, 1) for line in lines if line.strip() and not line.startswith("#") and " " in line)


def test_mosquitto_keeps_a_long_backlog() -> None:
    options = mosquitto_options()
    assert options["persistence"] == "true"
    assert int(options["max_queued_messages"]) >= 100_000  # default 1000: 15 s of a 20-machine line
    assert int(options["max_queued_bytes"]) > 0  # bounded memory
    assert options["queue_qos0_messages"] == "false"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.mark.skipif(shutil.which("mosquitto") is None, reason="mosquitto is not installed")
def test_mosquitto_starts_with_the_config(tmp_path: Path) -> None:
    port = free_port()
    text = (DEPLOY / "mosquitto" / "mosquitto.conf").read_text()
    text = text.replace("persistence_location /mosquitto/data/", f"persistence_location {tmp_path}/")
    text = text.replace("listener 1883", f"listener {port} 127.0.0.1")
    text += f"\nuser {getpass.getuser()}\n"
    conf = tmp_path / "mosquitto.conf"
    conf.write_text(text)
    proc = subprocess.Popen(["mosquitto", "-c", str(conf)], stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:

        def listening() -> bool:
            assert proc.poll() is None, proc.stdout.read() if proc.stdout else ""
            return tcp_accepts(port)

        wait_until_sync(listening, 10, "mosquitto to listen", interval=0.1)
    finally:
        proc.terminate()
        out, _ = proc.communicate(timeout=10)
    assert "Error" not in out, out
    assert (tmp_path / "mosquitto.db").exists()  # persistence saved on a clean stop


# --- Grafana -------------------------------------------------------------------------------


def test_datasource_points_at_the_compose_influxdb(compose: dict[str, Any]) -> None:
    source = yaml.safe_load((PROVISIONING / "datasources" / "influxdb.yaml").read_text())
    (ds,) = source["datasources"]
    assert ds["type"] == "influxdb"
    assert ds["url"] == "http://influxdb:8086"
    assert any(p.endswith(":8086:8086") for p in compose["services"]["influxdb"]["ports"])
    assert ds["jsonData"]["version"] == "Flux"
    grafana_env = compose["services"]["grafana"]["environment"]
    for value in (ds["jsonData"]["organization"], ds["jsonData"]["defaultBucket"], ds["secureJsonData"]["token"]):
        variable = re.fullmatch(r"\$\{(\w+)\}", value)
        assert variable, value
        assert variable[1] in grafana_env
    influx_env = compose["services"]["influxdb"]["environment"]
    assert grafana_env["INFLUX_TOKEN"] == influx_env["DOCKER_INFLUXDB_INIT_ADMIN_TOKEN"]
    assert grafana_env["INFLUX_BUCKET"] == influx_env["DOCKER_INFLUXDB_INIT_BUCKET"]
    assert grafana_env["INFLUX_ORG"] == influx_env["DOCKER_INFLUXDB_INIT_ORG"]
    mounts = [v for v in compose["services"]["grafana"]["volumes"] if v.startswith("./grafana/provisioning:")]
    assert mounts == ["./grafana/provisioning:/etc/grafana/provisioning:ro"]


@pytest.fixture(scope="module")
def dashboard() -> dict[str, Any]:
    provider = yaml.safe_load((PROVISIONING / "dashboards" / "edge-agent.yaml").read_text())
    (entry,) = provider["providers"]
    assert entry["options"]["path"] == "/etc/grafana/provisioning/dashboards"
    data: dict[str, Any] = json.loads((PROVISIONING / "dashboards" / "edge-agent.json").read_text())
    return data


def queries(dashboard: dict[str, Any]) -> list[str]:
    found = [t["query"] for p in dashboard["panels"] for t in p["targets"]]
    found += [v["query"] for v in dashboard["templating"]["list"]]
    found += [a["target"]["query"] for a in dashboard["annotations"]["list"] if "target" in a]
    return found


def test_dashboard_panels(dashboard: dict[str, Any]) -> None:
    titles = [p["title"].lower() for p in dashboard["panels"]]
    assert any("overview" in t for t in titles)
    assert "signals" in titles
    source = yaml.safe_load((PROVISIONING / "datasources" / "influxdb.yaml").read_text())
    uid = source["datasources"][0]["uid"]
    for panel in dashboard["panels"]:
        assert panel["datasource"]["uid"] == uid
        assert all(t["datasource"]["uid"] == uid for t in panel["targets"])
    # Alert events are annotations (the summary is their text); anomaly levels are a panel.
    (alerts,) = [a for a in dashboard["annotations"]["list"] if not a.get("builtIn")]
    assert alerts["datasource"]["uid"] == alerts["target"]["datasource"]["uid"] == uid
    assert '_measurement == "alerts"' in alerts["target"]["query"]
    assert '_field == "summary"' in alerts["target"]["query"]
    assert alerts["mappings"]["text"]["value"] in made_by_map(alerts["target"]["query"])
    scores = [p for p in dashboard["panels"] if '"anomaly_score"' in p["targets"][0]["query"]]
    assert len(scores) == 1
    assert '_field == "level"' in scores[0]["targets"][0]["query"]
    assert scores[0]["fieldConfig"]["defaults"]["thresholds"]["steps"][-1]["value"] == 1


def made_by_map(query: str) -> set[str]:
    """Columns a ``map(fn: (r) => ({...}))`` in the query creates."""
    bodies = re.findall(r"map\(fn: \(r\) => \(\{(.*?)\}\)\)", query, re.DOTALL)
    return {key for body in bodies for key in re.findall(r"(\w+):", body)}


def test_dashboard_queries_ask_for_what_exists(
    dashboard: dict[str, Any], points: dict[str, dict[str, set[str]]]
) -> None:
    for query in queries(dashboard):
        assert "v.defaultBucket" in query
        measurements = set(re.findall(r'_measurement == "([^"]*)"', query))
        measurements |= set(re.findall(r'measurement: "([^"]*)"', query))
        assert measurements, query
        assert measurements <= set(points), measurements
        tags = set().union(*(points[m]["tag"] for m in measurements))
        fields = set().union(*(points[m]["field"] for m in measurements))
        names = tags | fields
        for field in re.findall(r'_field == "([^"]*)"', query):
            assert field in fields, field
        for name in re.findall(r"\br\.(\w+)", query):
            assert name.startswith("_") or name in names, name
        for column_list in re.findall(r"columns: \[([^\]]*)\]", query):
            for column in re.findall(r'"(\w+)"', column_list):
                assert column.startswith("_") or column in names | made_by_map(query), column
        for tag in re.findall(r'\btag: "([^"]*)"', query):
            assert tag in tags
    signals = next(p for p in dashboard["panels"] if p["title"] == "Signals")
    assert '_field == "value"' in signals["targets"][0]["query"]


# --- Telegraf ------------------------------------------------------------------------------


def test_telegraf_writes_the_bridges_points(point: dict[str, set[str]]) -> None:
    conf = tomllib.loads((DEPLOY / "telegraf" / "telegraf.conf").read_text())
    (consumer,) = conf["inputs"]["mqtt_consumer"]
    assert consumer["data_format"] == "influx"
    assert consumer["topic_tag"] == ""  # no extra tag: the same series as the ingest bridge
    assert consumer["topics"] == ["edge/+/+/+/+/telemetry"]
    assert consumer["qos"] == 1
    assert consumer["persistent_session"] is True
    assert consumer["client_id"]
    (output,) = conf["outputs"]["influxdb_v2"]
    assert output["token"] == "${INFLUX_TOKEN}"
    assert conf["agent"]["omit_hostname"] is True  # no host tag either


# --- systemd -------------------------------------------------------------------------------


def unit_settings() -> dict[str, list[str]]:
    settings: dict[str, list[str]] = {}
    for line in UNIT.read_text().splitlines():
        if "=" in line and not line.startswith(("#", "[")):
            key, value = line.split("=", 1)
            settings.setdefault(key, []).append(value)
    return settings


def test_unit_is_hardened_and_restarts() -> None:
    settings = unit_settings()
    assert settings["User"] == ["edge-agent"]
    assert settings["ProtectSystem"] == ["strict"]
    assert settings["Restart"] == ["always"]
    assert settings["NoNewPrivileges"] == ["yes"]
    assert settings["StateDirectory"] == ["edge-agent"]
    for key in ("ExecStartPre", "ExecStart"):
        binary, *args = settings[key][0].split()
        assert binary == "/opt/edge-agent/venv/bin/edge-agent"  # where install.sh puts it
        build_parser().parse_args(args)
        assert args[-1] == "/etc/edge-agent/config.yaml"


def test_unit_passes_systemd_analyze_verify(tmp_path: Path) -> None:
    analyze = shutil.which("systemd-analyze")
    if analyze is None:
        pytest.skip("systemd-analyze is not installed (systemd is rarely present in a container)")
    agent = shutil.which("edge-agent") or str(REPO / ".venv" / "bin" / "edge-agent")
    # verify checks that the binaries exist: point the copy at the one installed here.
    unit = tmp_path / "edge-agent.service"
    unit.write_text(UNIT.read_text().replace("/opt/edge-agent/venv/bin/edge-agent", agent))
    result = subprocess.run(
        [analyze, "verify", "--man=no", str(unit)], capture_output=True, text=True, timeout=60, check=False
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert "edge-agent.service" not in result.stderr, result.stderr  # no warnings about the unit
