"""`edge-agent discover` with OPC UA security: secure by default, trust as the agent does, none only when asked."""

from __future__ import annotations

import asyncio
import hashlib
import sys
from pathlib import Path

import yaml

from connectors.opcua.pki import TrustStore
from edge_agent.runtime.loader import parse_config
from simulators import Simulation
from tests.e2e.test_discover import discover


async def test_discover_refuses_an_unknown_certificate_then_browses_encrypted_once_trusted(tmp_path: Path) -> None:
    pki = tmp_path / "pki"
    async with Simulation(seed=4, modbus_port=None, opcua_security="Basic256Sha256") as sim:
        assert sim.opcua.certificate is not None
        fingerprint = hashlib.sha256(sim.opcua.certificate).hexdigest()
        code, out, err = await discover(sim.opcua.endpoint, "--filter", "*pump-1*", "--pki-dir", str(pki))
        assert code == 1, out + err
        [line] = err.strip().splitlines()
        assert line.startswith("error: the server's certificate is unknown and was refused")
        assert line.endswith(f"run: edge-agent certs trust {fingerprint} --pki-dir {pki}")
        assert not out
        assert [e.state for e in TrustStore(pki).entries(("trusted", "rejected"))] == ["rejected"]

        TrustStore(pki).move(fingerprint, "trusted")
        section_file = tmp_path / "pump.yaml"
        code, out, err = await discover(
            sim.opcua.endpoint,
            "--filter",
            "*pump-1*",
            "--id",
            "pump-1",
            "--pki-dir",
            str(pki),
            "--out",
            str(section_file),
        )
        assert code == 0, err
        assert "nsu=urn:edge-agent:simulator;s=pump-1.flow" in out
        text = section_file.read_text()
        assert "# Security: Basic256Sha256 SignAndEncrypt (the agent's default" in text
        section = yaml.safe_load(text)
        assert "security" not in section, "the agent's default (secure) needs no key"

        # The section runs as written, with the trust store discover used.
        section["security"] = {"pki_dir": str(pki)}
        config_file = tmp_path / "agent.yaml"
        config_file.write_text(yaml.safe_dump({"machines": [section]}))
        assert parse_config(config_file.read_text()).machines[0].id == "pump-1"
        process = await asyncio.create_subprocess_exec(
            sys.executable,
            "-m",
            "edge_agent",
            "run",
            str(config_file),
            "--once",
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.STDOUT,
        )
        output = (await asyncio.wait_for(process.communicate(), 60))[0].decode()
        assert process.returncode == 0, output
        tags = len(section["tags"])
        assert f"pump-1: {tags} tag(s), {tags} good" in output
        assert sim.write_count == 0


async def test_discover_against_a_server_without_security_says_how_to_allow_it(tmp_path: Path) -> None:
    async with Simulation(seed=5, modbus_port=None) as sim:
        code, out, err = await discover(sim.opcua.endpoint, "--pki-dir", str(tmp_path / "pki"))
        assert code == 1
        [line] = err.strip().splitlines()
        assert "offers only security None" in line
        assert line.endswith("For discover: --security none")
        assert not out
