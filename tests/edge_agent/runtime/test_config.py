"""Config loading: the example validates, and every bad input is explained with line, key and fix."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from edge_agent.core.errors import ConfigError
from edge_agent.runtime.loader import load_config, parse_config

ROOT = Path(__file__).resolve().parents[3]

GOOD_MODBUS = """\
machines:
  - id: press-1
    type: modbus
    host: 127.0.0.1
    tags:
      - {name: pressure, address: 0, type: float32}
"""


def problems_of(text: str) -> list[str]:
    with pytest.raises(ConfigError) as info:
        parse_config(text, "plant.yaml")
    assert info.value.file == "plant.yaml"
    assert "plant.yaml" in str(info.value)
    return info.value.problems


def test_example_config_validates() -> None:
    config = load_config(ROOT / "config.example.yaml")
    assert [m.id for m in config.machines] == ["pump-1", "press-1"]
    assert config.mqtt is not None
    assert config.influxdb is not None


def test_connector_sample_configs_validate() -> None:
    import yaml

    samples = sorted((ROOT / "connectors").glob("*/sample.yaml"))
    for sample in samples:
        machines = yaml.safe_load(sample.read_text())
        text = yaml.safe_dump({"machines": machines if isinstance(machines, list) else [machines]})
        parse_config(text, str(sample))


def test_durations_and_defaults() -> None:
    config = parse_config(GOOD_MODBUS.replace("    host:", "    interval: 500ms\n    host:"))
    machine = config.machines[0]
    assert machine.interval == 0.5
    assert machine.effective_timeout == pytest.approx(0.4)


def test_unknown_key_suggests_the_nearest_valid_key() -> None:
    [problem] = problems_of(GOOD_MODBUS.replace("    host:", "    intervall: 1s\n    host:"))
    assert problem.startswith("line 4: machines[0].intervall: unknown key")
    assert "did you mean 'interval'?" in problem


def test_unknown_key_in_a_tag_suggests_too() -> None:
    problems = problems_of(GOOD_MODBUS.replace("address: 0", "adress: 0"))
    [problem] = [p for p in problems if "adress" in p]
    assert "machines[0].tags[0].adress" in problem
    assert "did you mean 'address'?" in problem


def test_missing_required_key_names_it() -> None:
    [problem] = problems_of(GOOD_MODBUS.replace("    host: 127.0.0.1\n", ""))
    assert "machines[0].host: required key 'host' is missing" in problem
    assert "Fix: add it" in problem


def test_wrong_type_is_explained() -> None:
    [problem] = problems_of(GOOD_MODBUS.replace("    host:", "    enabled: sometimes\n    host:"))
    assert "line 4: machines[0].enabled" in problem
    assert "write true or false" in problem


def test_duplicate_machine_id() -> None:
    twice = GOOD_MODBUS + GOOD_MODBUS.split("machines:\n", 1)[1]
    [problem] = problems_of(twice)
    assert problem.startswith("line 7: machines[1].id: duplicate machine id 'press-1'")
    assert "unique" in problem


@pytest.mark.parametrize("interval", ["0s", "-1s"])
def test_interval_must_be_positive(interval: str) -> None:
    [problem] = problems_of(GOOD_MODBUS.replace("    host:", f"    interval: {interval}\n    host:"))
    assert "interval must be greater than 0" in problem
    assert "Fix:" in problem


def test_timeout_must_be_shorter_than_interval() -> None:
    [problem] = problems_of(GOOD_MODBUS.replace("    host:", "    interval: 1s\n    timeout: 1s\n    host:"))
    assert "timeout (1 s) must be shorter than interval (1 s)" in problem


def test_unparseable_yaml_gives_the_line() -> None:
    [problem] = problems_of("machines:\n  - id: x\n   type: modbus\n")
    assert problem.startswith("line 3, column 4: not valid YAML")


def test_duplicate_yaml_key_is_refused() -> None:
    [problem] = problems_of(GOOD_MODBUS.replace("    host: 127.0.0.1\n", "    host: a\n    host: b\n"))
    assert "duplicate key 'host' (first on line 4)" in problem


@pytest.mark.parametrize("address", [-1, 65536])
def test_modbus_address_out_of_range(address: int) -> None:
    [problem] = problems_of(GOOD_MODBUS.replace("address: 0", f"address: {address}"))
    assert "machines[0].tags[0].address" in problem
    assert f"(got {address})" in problem


def test_unknown_data_type_lists_the_valid_ones() -> None:
    [problem] = problems_of(GOOD_MODBUS.replace("float32", "float33"))
    assert "machines[0].tags[0].type" in problem
    assert "'float32'" in problem
    assert "(got 'float33')" in problem


def test_unknown_protocol_lists_the_known_ones() -> None:
    [problem] = problems_of(GOOD_MODBUS.replace("type: modbus", "type: profinet"))
    assert "'opcua'" in problem
    assert "'modbus'" in problem


def test_all_problems_are_reported_at_once_in_line_order() -> None:
    text = GOOD_MODBUS.replace("address: 0", "address: 99999").replace("    host:", "    colour: red\n    host:")
    problems = problems_of(text)
    assert len(problems) == 2
    assert problems[0].startswith("line 4:")
    assert problems[1].startswith("line 7:")


def test_secrets_come_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TEST_MQTT_PASSWORD", "s3cret-value")
    config = parse_config(GOOD_MODBUS + "mqtt:\n  username: agent\n  password: ${TEST_MQTT_PASSWORD}\n")
    assert config.mqtt is not None
    assert config.mqtt.password is not None
    assert config.mqtt.password.get_secret_value() == "s3cret-value"
    assert "s3cret-value" not in repr(config)


def test_secret_from_a_file(tmp_path: Path) -> None:
    secret = tmp_path / "token"
    secret.write_text("tok-123\n")
    config = parse_config(
        GOOD_MODBUS + f"influxdb:\n  url: http://x:8086\n  org: o\n  bucket: b\n  token: ${{file:{secret}}}\n"
    )
    assert config.influxdb is not None
    assert config.influxdb.token is not None
    assert config.influxdb.token.get_secret_value() == "tok-123"


def test_unset_environment_variable_is_a_located_error(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("NOT_SET_ANYWHERE", raising=False)
    [problem] = problems_of(GOOD_MODBUS + "mqtt:\n  password: ${NOT_SET_ANYWHERE}\n")
    assert problem.startswith("line 8: mqtt.password: environment variable NOT_SET_ANYWHERE is not set")
    assert "Fix: export NOT_SET_ANYWHERE=" in problem


def test_influx_v2_needs_org_and_bucket() -> None:
    [problem] = problems_of(GOOD_MODBUS + "influxdb:\n  version: 2\n")
    assert "org" in problem
    assert "bucket" in problem
    assert "Fix:" in problem


def _cli(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "edge_agent", *args], capture_output=True, text=True, timeout=60, check=False
    )


def test_check_config_cli_accepts_the_example() -> None:
    result = _cli("check-config", str(ROOT / "config.example.yaml"))
    assert result.returncode == 0, result.stderr
    assert "machine pump-1: opcua" in result.stdout


@pytest.mark.parametrize("command", ["check-config", "run"])
def test_bad_config_exits_2_names_the_file_and_changes_nothing(
    tmp_path: Path, command: str, own_state_directory: Path
) -> None:
    bad = tmp_path / "plant.yaml"
    bad.write_text(GOOD_MODBUS.replace("address: 0", "address: 70000"))
    before = bad.read_bytes()
    result = _cli(command, str(bad))
    assert result.returncode == 2
    assert f"{bad}:" in result.stderr
    assert "line 6: machines[0].tags[0].address" in result.stderr
    assert "Traceback" not in result.stderr
    assert bad.read_bytes() == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["plant.yaml"]
    assert list(own_state_directory.iterdir()) == [], "no outbox or model file was created"


def test_missing_config_file_is_a_clear_error(tmp_path: Path) -> None:
    result = _cli("check-config", str(tmp_path / "nope.yaml"))
    assert result.returncode == 2
    assert "cannot read the file" in result.stderr
    assert "Traceback" not in result.stderr


def test_json_schema_accepts_the_example_and_catches_a_typo(tmp_path: Path) -> None:
    import json

    import jsonschema
    import yaml

    out = tmp_path / "schema.json"
    result = _cli("config", "schema", "--out", str(out))
    assert result.returncode == 0, result.stderr
    schema = json.loads(out.read_text())
    example = yaml.safe_load((ROOT / "config.example.yaml").read_text())
    jsonschema.validate(example, schema)
    example["machines"][0]["intervall"] = "1s"
    with pytest.raises(jsonschema.ValidationError, match="intervall"):
        jsonschema.validate(example, schema)


def test_commented_sections_of_the_example_are_valid_too(monkeypatch: pytest.MonkeyPatch) -> None:
    """Optional sections are shown commented out; uncommented, they must validate as they stand."""
    from edge_agent.runtime.config import AgentConfig

    monkeypatch.setenv("EDGE_WEB_PASSWORD", "example-password")
    monkeypatch.setenv("EDGE_WEB_TOKEN", "example-token-of-16-chars")
    text = (ROOT / "config.example.yaml").read_text()
    sections = [key for key in AgentConfig.model_fields if f"\n# {key}:\n" in text]
    assert {"ingest", "outbox", "web", "alerts", "logging"} <= set(sections)
    uncommented = []
    inside = False
    for line in text.splitlines():
        if line.startswith("# ") and line[2:].rstrip(":") in sections:
            inside = True
        elif not line.startswith("#"):
            inside = False
        if inside and line.startswith("# ") and not line.startswith("#   #"):
            uncommented.append(line[2:])
        else:
            uncommented.append(line)
    config = parse_config("\n".join(uncommented), "config.example.yaml (uncommented)")
    assert config.web is not None
    assert config.alerts is not None
