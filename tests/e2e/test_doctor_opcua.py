"""`edge-agent doctor` on a secure OPC UA server: offered and chosen policy, certificate trust, login.

The doctor's fix for an untrusted certificate is run exactly as printed, and then every row
passes. The doctor stores nothing but the refused certificate in rejected/ (no trust on first
use, no key of its own).
"""

from __future__ import annotations

import asyncio
import hashlib
import shlex
import sys
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
import pytest_asyncio

from connectors.opcua.pki import TrustStore
from simulators import Simulation
from tests.e2e.test_doctor import doctor, row

pytestmark = pytest.mark.asyncio(loop_scope="module")


@pytest_asyncio.fixture(loop_scope="module", scope="module")
async def secure_sim() -> AsyncIterator[Simulation]:
    async with Simulation(
        update_interval=0.1, modbus_port=None, opcua_security="Basic256Sha256", opcua_users={"operator": "pw-d0c"}
    ) as sim:
        yield sim
    assert sim.write_count == 0


def plant(sim: Simulation, pki: Path, **security: Any) -> dict[str, Any]:
    return {
        "machines": [
            {
                "id": "pump-1",
                "type": "opcua",
                "endpoint": sim.opcua.endpoint,
                "security": {"pki_dir": str(pki), **security},
                "username": "operator",
                "password": "${DOCTOR_OPCUA_PW}",
                "tags": [{"name": "flow", "node": "nsu=urn:edge-agent:simulator;s=pump-1.flow"}],
            }
        ]
    }


async def test_untrusted_certificate_fails_with_the_exact_command_that_fixes_it(
    secure_sim: Simulation, tmp_path: Path
) -> None:
    assert secure_sim.opcua.certificate is not None
    fingerprint = hashlib.sha256(secure_sim.opcua.certificate).hexdigest()
    pki = tmp_path / "pki"
    env = {"DOCTOR_OPCUA_PW": "pw-d0c"}
    code, output = await doctor(tmp_path, plant(secure_sim, pki), env=env)
    assert code == 1, output
    assert row(output, "machine pump-1 (opcua)")[0].startswith("FAIL")
    offered = row(output, "machine pump-1: offered security")[0]
    assert offered.startswith("PASS")
    assert "Basic256Sha256 SignAndEncrypt, Basic256Sha256 Sign" in offered
    chosen = row(output, "machine pump-1: chosen security")[0]
    assert chosen.startswith("PASS")
    assert "Basic256Sha256 SignAndEncrypt (policy auto)" in chosen
    line, fix = row(output, "machine pump-1: server certificate")
    assert line.startswith("FAIL")
    assert fingerprint in line
    command = f"edge-agent certs trust {fingerprint} --pki-dir {pki}"
    assert fix.endswith(command), fix
    store = TrustStore(pki)
    assert [e.state for e in store.entries()] == ["rejected"], "only the refused certificate was stored"

    argv = shlex.split(fix.split("run: ", 1)[1])
    assert argv[0] == "edge-agent"
    process = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "edge_agent", *argv[1:], stdout=asyncio.subprocess.PIPE
    )
    await asyncio.wait_for(process.communicate(), 60)
    assert process.returncode == 0

    code, output = await doctor(tmp_path, plant(secure_sim, pki), env=env)
    assert code == 0, output
    assert "FAIL" not in output
    assert f"trusted: CN=edge-agent simulator, SHA-256 {fingerprint}" in row(output, "machine pump-1: server cert")[0]
    assert "logged in as 'operator'" in row(output, "machine pump-1: login")[0]
    assert "not made yet" in row(output, "machine pump-1: agent certificate")[0]
    assert not (pki / "own").exists(), "the doctor makes no key in the agent's store"

    code, output = await doctor(tmp_path, plant(secure_sim, pki), env={"DOCTOR_OPCUA_PW": "wrong-pw-7"})
    assert code == 1
    line, fix = row(output, "machine pump-1: login")
    assert line.startswith("FAIL")
    assert "login as 'operator' was refused" in line
    assert "check username and password" in fix
    assert "wrong-pw-7" not in output


async def test_trust_on_first_use_is_left_to_the_agent(secure_sim: Simulation, tmp_path: Path) -> None:
    pki = tmp_path / "pki"
    code, output = await doctor(
        tmp_path, plant(secure_sim, pki, trust_on_first_use=True), env={"DOCTOR_OPCUA_PW": "pw-d0c"}
    )
    assert code == 0, output
    assert "unknown (the agent trusts it on first use)" in row(output, "machine pump-1: server certificate")[0]
    assert not TrustStore(pki).entries(), "nothing trusted, nothing rejected"
    assert not (pki / "pins.json").exists()
