"""deploy/install.sh: dry run, and a real install below a temporary root (no user, no systemctl)."""

from __future__ import annotations

import os
import shutil
import stat
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
SCRIPT = REPO / "deploy" / "install.sh"
UNIT = REPO / "deploy" / "systemd" / "edge-agent.service"


def install(*args: str | Path, check: bool = True) -> subprocess.CompletedProcess[str]:
    result = subprocess.run(
        ["sh", str(SCRIPT), *map(str, args)], capture_output=True, text=True, timeout=300, check=False
    )
    if check:
        assert result.returncode == 0, result.stdout + result.stderr
    return result


def mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


@pytest.fixture(scope="module")
def wheel(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The project as a wheel, built offline with the hatchling of the dev venv."""
    out = tmp_path_factory.mktemp("wheel")
    subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "wheel",
            "--quiet",
            "--no-deps",
            "--no-build-isolation",
            "-w",
            str(out),
            str(REPO),
        ],
        check=True,
        timeout=300,
    )
    (found,) = out.glob("edge_agent-*.whl")
    return found


def test_dry_run_prints_every_step_and_changes_nothing(tmp_path: Path) -> None:
    result = install("--dry-run", "--prefix", tmp_path)
    assert list(tmp_path.iterdir()) == []
    out = result.stdout
    assert f"-m venv {tmp_path}/opt/edge-agent/venv" in out
    assert f"pip install --quiet --disable-pip-version-check --upgrade {REPO}" in out
    assert f"install -m 0640 {REPO}/config.example.yaml {tmp_path}/etc/edge-agent/config.yaml" in out
    assert f"install -m 0600 /dev/null {tmp_path}/etc/edge-agent/env" in out
    assert f"install -d -m 0750 {tmp_path}/var/lib/edge-agent" in out
    assert f"install -m 0644 {UNIT} {tmp_path}/etc/systemd/system/edge-agent.service" in out
    assert "systemctl: skipped (--prefix)" in out


def test_dry_run_on_the_real_root_shows_user_ownership_and_systemctl() -> None:
    before = Path("/opt/edge-agent").exists(), Path("/etc/edge-agent").exists()
    out = install("--dry-run").stdout
    assert (Path("/opt/edge-agent").exists(), Path("/etc/edge-agent").exists()) == before
    if "user edge-agent: exists" not in out:
        assert "+ useradd --system --user-group --home-dir /var/lib/edge-agent" in out
    assert "install -d -m 0750 -o root -g edge-agent /etc/edge-agent" in out
    assert "install -d -m 0750 -o edge-agent -g edge-agent /var/lib/edge-agent" in out
    if shutil.which("systemctl"):
        assert "+ systemctl enable edge-agent.service" in out


def test_unknown_argument_is_a_usage_error() -> None:
    result = install("--frobnicate", check=False)
    assert result.returncode == 2
    assert "unknown argument: --frobnicate" in result.stderr


def test_prefix_install_then_rerun_keeps_config_and_secrets(tmp_path: Path, wheel: Path) -> None:
    root = tmp_path / "root"
    args = ("--prefix", root, "--source", wheel, "--python", sys.executable, "--pip-args", "--no-deps --no-index")
    install(*args)

    venv = root / "opt/edge-agent/venv"
    assert (venv / "bin/edge-agent").is_file()
    assert list((venv / "lib").glob("python3*/site-packages/edge_agent/commands/logs.py"))
    etc = root / "etc/edge-agent"
    config, env = etc / "config.yaml", etc / "env"
    assert mode(etc) == 0o750
    assert config.read_text() == (REPO / "config.example.yaml").read_text()
    assert mode(config) == 0o640
    assert env.read_text() == ""
    assert mode(env) == 0o600
    assert mode(root / "var/lib/edge-agent") == 0o750
    unit = root / "etc/systemd/system/edge-agent.service"
    assert unit.read_text() == UNIT.read_text()

    # Second run: an upgrade. Edited config and secrets stay, loosened modes are put back.
    config.write_text("site: {name: edited}\n")
    env.write_text("MQTT_PASSWORD=s3cret\n")
    os.chmod(env, 0o644)
    os.chmod(config, 0o666)
    out = install(*args).stdout
    assert "venv" in out
    assert "exists, upgrading the package" in out
    assert "exists, kept" in out
    assert "up to date" in out
    assert config.read_text() == "site: {name: edited}\n"
    assert env.read_text() == "MQTT_PASSWORD=s3cret\n"
    assert mode(config) == 0o640
    assert mode(env) == 0o600


@pytest.mark.skipif(
    shutil.which("shellcheck") is None, reason="shellcheck is not installed (apt-get install shellcheck)"
)
def test_shellcheck_clean() -> None:
    result = subprocess.run(["shellcheck", str(SCRIPT)], capture_output=True, text=True, timeout=60, check=False)
    assert result.returncode == 0, result.stdout
