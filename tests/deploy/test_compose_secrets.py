"""Secrets of the compose stack: files, not environment values; each service only its own; tokens scoped.

No Docker here, so compose.yaml is read as YAML and the scripts the services start through are
run directly: compose/check-secrets.sh must refuse the placeholders of secrets.example/.
"""

from __future__ import annotations

import os
import re
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml

DEPLOY = Path(__file__).resolve().parents[2] / "deploy"
CHECK = DEPLOY / "compose" / "check-secrets.sh"
TOKENS = DEPLOY / "influxdb" / "scoped-tokens.sh"
SECRET_WORDS = re.compile(r"PASSWORD|TOKEN|SECRET|_KEY$", re.I)

# What each service may hold, and nothing more.
NEEDS = {
    "mosquitto": {"mqtt-edge-agent", "mqtt-ingest", "mqtt-maintenance"},
    "influxdb": {"influx-admin-password", "influx-admin-token"},
    "influx-tokens": {"influx-admin-token"},
    "grafana": {"grafana-admin-password"},
    "agent": {"mqtt-edge-agent", "web-password"},
    "ingest": {"mqtt-ingest"},
    "simulator": set(),
}


@pytest.fixture(scope="module")
def compose() -> dict[str, Any]:
    data: dict[str, Any] = yaml.safe_load((DEPLOY / "compose.yaml").read_text())
    return data


def secrets_of(service: dict[str, Any]) -> set[str]:
    return {s if isinstance(s, str) else s["source"] for s in service.get("secrets", [])}


def test_no_secret_value_in_the_environment(compose: dict[str, Any]) -> None:
    for name, service in compose["services"].items():
        for key, value in (service.get("environment") or {}).items():
            if SECRET_WORDS.search(key) and not key.endswith("_FILE"):
                pytest.fail(f"{name}: {key} passes a secret as an environment value; use a secret file")
            if key.endswith("_FILE"):
                assert str(value).startswith("/run/secrets/"), f"{name}: {key}={value}"
                assert str(value).rsplit("/", 1)[1] in secrets_of(service), f"{name}: {value} is not mounted"
    assert "TOKEN" not in (DEPLOY / ".env.example").read_text()
    assert "PASSWORD" not in (DEPLOY / ".env.example").read_text()


def test_every_secret_is_a_file_with_a_placeholder_example(compose: dict[str, Any]) -> None:
    for name, secret in compose["secrets"].items():
        assert set(secret) == {"file"}, f"{name}: a secret is a file, not an environment value"
        assert secret["file"] == f"./secrets/{name}"
        example = DEPLOY / "secrets.example" / name
        assert example.read_text().strip() == "change-me", example
    assert set(compose["secrets"]) == set().union(*NEEDS.values())


def test_each_service_gets_only_the_secrets_it_needs(compose: dict[str, Any]) -> None:
    assert set(compose["services"]) == set(NEEDS)
    for name, service in compose["services"].items():
        assert secrets_of(service) == NEEDS[name], name
        if secrets_of(service):
            assert service["entrypoint"][0] == "/edge/check-secrets.sh", f"{name} starts unchecked"
            assert "./compose/check-secrets.sh:/edge/check-secrets.sh:ro" in service["volumes"], name


def test_influxdb_tokens_are_scoped(compose: dict[str, Any]) -> None:
    services = compose["services"]
    # Only InfluxDB and the token maker hold the all-access admin token.
    holders = {name for name, s in services.items() if "influx-admin-token" in secrets_of(s)}
    assert holders == {"influxdb", "influx-tokens"}

    # The read token reaches Grafana only, the write token the ingest bridge only.
    def mounted(volume: str) -> set[str]:
        return {n for n, s in services.items() if any(v.startswith(f"{volume}:") for v in s.get("volumes", []))}

    assert mounted("influx-read-token") == {"grafana", "influx-tokens"}
    assert mounted("influx-write-token") == {"ingest", "influx-tokens"}
    script = TOKENS.read_text()
    assert re.search(r"make_token read \S+ --read-bucket ", script)
    assert re.search(r"make_token write \S+ --write-bucket ", script)
    assert "--all-access" not in script
    assert "--operator" not in script
    ingest = yaml.safe_load((DEPLOY / "compose" / "ingest.yaml").read_text())
    assert ingest["influxdb"]["token"] == "${file:/run/influx-token/token}"
    agent = yaml.safe_load((DEPLOY / "compose" / "edge-agent.yaml").read_text())
    assert "influxdb" not in agent  # the agent delivers over MQTT: no database token at all


def run_check(secrets: Path) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "SECRETS_DIR": str(secrets)}
    return subprocess.run(
        [str(CHECK), "echo", "started"], env=env, capture_output=True, text=True, timeout=30, check=False
    )


def test_placeholder_secrets_are_refused(tmp_path: Path) -> None:
    for example in (DEPLOY / "secrets.example").iterdir():
        (tmp_path / example.name).write_text(example.read_text())
    result = run_check(tmp_path)
    assert result.returncode == 78
    assert "started" not in result.stdout
    assert "error: secret 'web-password' still holds the shipped placeholder 'change-me'" in result.stderr
    assert "refusing to start" in result.stderr


def test_empty_secret_is_refused_and_real_ones_start(tmp_path: Path) -> None:
    (tmp_path / "web-password").write_text("Xk3v9-long-random-value\n")
    (tmp_path / "mqtt-password").write_text("")
    result = run_check(tmp_path)
    assert result.returncode == 78
    assert "secret 'mqtt-password' is empty" in result.stderr
    (tmp_path / "mqtt-password").write_text("another-long-random-value\n")
    result = run_check(tmp_path)
    assert result.returncode == 0, result.stderr
    assert result.stdout == "started\n"  # the service's own command runs, in place of the script
