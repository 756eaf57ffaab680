"""The agent's secure OPC UA connection to a server we did not write (node-opcua).

node-opcua offers None and Basic256Sha256/SignAndEncrypt; on the secure endpoint it wants a user
name and password (anonymous only on None) and accepts any client certificate. The agent must
refuse the server's certificate until an operator trusts it with ``edge-agent certs trust``, then
read the same values as over None, and say clearly when the password is wrong.
"""

from __future__ import annotations

import hashlib
import re
import shlex
import sys
from pathlib import Path
from typing import Any

import pytest

from connectors.opcua.client import OpcUaConnector
from connectors.opcua.config import OpcUaMachine
from edge_agent.core.errors import ConnectError
from edge_agent.core.samples import Quality
from tests.helpers.waiting import wait_until
from tests.interop.conftest import run_client
from tests.interop.node_opcua import INDEXES, PASSWORD, SERVED, USERNAME, NodeOpcUaServer

WRONG_PASSWORD = "not-the-Pa55word"


def secure_machine(server: NodeOpcUaServer, pki: Path, **keys: Any) -> OpcUaMachine:
    tags: list[dict[str, Any]] = []
    for name, (node, _, _) in SERVED.items():
        tags.append({"name": name, "node": node, **({"index": INDEXES[name]} if name in INDEXES else {})})
    security = {"policy": "Basic256Sha256", "mode": "SignAndEncrypt", "pki_dir": str(pki)}
    return OpcUaMachine.model_validate(
        {
            "type": "opcua",
            "id": "node-opcua-secure",
            "endpoint": server.endpoint,
            "interval": "3s",
            "connect_timeout": "30s",  # RSA on a loaded box
            "tags": tags,
            "security": security | keys.pop("security", {}),
            **keys,
        }
    )


def sha256(der: bytes) -> str:
    return hashlib.sha256(der).hexdigest()


def bare(text: str) -> str:
    """A fingerprint as lowercase hex without colons, to compare however it was printed."""
    return text.replace(":", "").lower()


def ders(folder: Path) -> list[str]:
    return sorted(sha256(path.read_bytes()) for path in folder.glob("*.der"))


@pytest.fixture
def trusted_pki(node_opcua_server: NodeOpcUaServer, tmp_path: Path) -> Path:
    """A trust store that already trusts the server (its DER copied into trusted/, as the README allows)."""
    pki = tmp_path / "pki"
    (pki / "trusted").mkdir(parents=True)
    (pki / "trusted" / "node-opcua-server.der").write_bytes(node_opcua_server.certificate_der)
    return pki


async def test_refused_until_trusted_with_the_cli_then_values_arrive(
    node_opcua_server: NodeOpcUaServer, tmp_path: Path
) -> None:
    server = node_opcua_server
    pki = tmp_path / "pki"
    config = secure_machine(server, pki, username=USERNAME, password=PASSWORD)
    fingerprint = sha256(server.certificate_der)

    refused = OpcUaConnector(config)
    with pytest.raises(ConnectError) as error:
        await refused.connect()
    await refused.close()
    message = str(error.value)
    assert fingerprint in bare(message), f"the refusal names the server's fingerprint: {message}"
    assert "edge-agent certs trust" in message, message
    assert ders(pki / "rejected") == [fingerprint], "the refused certificate waits in rejected/"
    assert ders(pki / "trusted") == []
    assert PASSWORD not in message

    # The operator runs the command the refusal names, as printed.
    command = re.search(r"run: (edge-agent certs trust .+)$", message)
    assert command is not None, message
    words = shlex.split(command.group(1))
    assert bare(words[3]) == fingerprint, words
    done = await run_client(sys.executable, "-m", "edge_agent", *words[1:], timeout=60)
    assert done.returncode == 0, done.explain()
    assert ders(pki / "trusted") == [fingerprint]
    assert ders(pki / "rejected") == []

    connector = OpcUaConnector(config)
    await connector.connect()
    try:
        batch = await connector.read()
        channel = connector.session_security
    finally:
        await connector.close()
    assert channel == ("Basic256Sha256", "SignAndEncrypt"), channel
    samples = {s.tag: s for s in batch.samples}
    for name, (_, value, kind) in SERVED.items():
        assert samples[name].quality is Quality.GOOD, samples[name]
        assert samples[name].value == value, samples[name]
        assert type(samples[name].value) is kind, samples[name]


async def test_the_strongest_offered_policy_is_chosen_by_default(
    node_opcua_server: NodeOpcUaServer, trusted_pki: Path
) -> None:
    """policy auto: this server's strongest (and only) secure offer is Basic256Sha256 SignAndEncrypt."""
    config = secure_machine(
        node_opcua_server, trusted_pki, username=USERNAME, password=PASSWORD, security={"policy": "auto"}
    )
    connector = OpcUaConnector(config)
    await connector.connect()
    try:
        assert (await connector.read()).good_count == len(SERVED)
        channel = connector.session_security
    finally:
        await connector.close()
    assert channel == ("Basic256Sha256", "SignAndEncrypt"), channel


async def test_a_wrong_password_is_refused_clearly(node_opcua_server: NodeOpcUaServer, trusted_pki: Path) -> None:
    connector = OpcUaConnector(
        secure_machine(node_opcua_server, trusted_pki, username=USERNAME, password=WRONG_PASSWORD)
    )
    with pytest.raises(ConnectError) as error:
        await connector.connect()
    await connector.close()
    message = str(error.value)
    assert f"login as {USERNAME!r} was refused" in message, message
    assert "Fix: check username and password" in message, message
    assert WRONG_PASSWORD not in message
    assert PASSWORD not in message


async def test_no_anonymous_login_on_the_secure_endpoint(node_opcua_server: NodeOpcUaServer, trusted_pki: Path) -> None:
    """The server offers anonymous login on None only: without credentials the agent says what to set."""
    connector = OpcUaConnector(secure_machine(node_opcua_server, trusted_pki))
    with pytest.raises(ConnectError) as error:
        await connector.connect()
    await connector.close()
    assert "username and password" in str(error.value), error.value


def pem_files_holding(folder: Path, der: bytes) -> list[Path]:
    """The PEM certificates in ``folder`` (node-opcua's store) that are ``der``."""
    from cryptography import x509
    from cryptography.hazmat.primitives.serialization import Encoding

    return [
        path
        for path in folder.glob("*.pem")
        if x509.load_pem_x509_certificate(path.read_bytes()).public_bytes(Encoding.DER) == der
    ]


async def test_a_server_that_refuses_the_agents_certificate_gets_it_trusted_there(
    node_opcua_server: NodeOpcUaServer, trusted_pki: Path
) -> None:
    """The other direction: node-opcua keeps the agent's certificate in its rejected folder until it is
    moved to its trusted folder; the agent's message names its certificate file; then values arrive."""
    server = node_opcua_server
    config = secure_machine(server, trusted_pki, username=USERNAME, password=PASSWORD)
    with server.refusing_unknown_clients():
        refused = OpcUaConnector(config)
        try:
            with pytest.raises(ConnectError) as error:
                await refused.connect()
        finally:
            await refused.close()
        own_files = sorted((trusted_pki / "own").rglob("*.der"))
        assert len(own_files) == 1, f"the agent made one certificate: {own_files}"
        own = own_files[0].read_bytes()
        message = str(error.value)
        assert f"Fix: trust it on the server: {own_files[0]}" in message, message
        waiting = pem_files_holding(server.pki / "server" / "rejected", own)
        assert len(waiting) == 1, "node-opcua keeps the agent's certificate in its rejected folder"
        waiting[0].rename(server.pki / "server" / "trusted" / "certs" / waiting[0].name)

        # node-opcua notices a certificate moved into its trusted folder a moment later; the agent's
        # poller retries with backoff, so retry the same way (bounded) rather than sleep and hope.
        connected: list[OpcUaConnector] = []

        async def accepted() -> bool:
            connector = OpcUaConnector(config)
            try:
                await connector.connect()
            except ConnectError:
                await connector.close()
                return False
            connected.append(connector)
            return True

        await wait_until(accepted, 20, "the server to accept the certificate moved to its trusted folder", interval=0.5)
        [connector] = connected
        try:
            assert (await connector.read()).good_count == len(SERVED)
        finally:
            await connector.close()
