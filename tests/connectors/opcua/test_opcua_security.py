"""OPC UA security on by default, against the simulator serving Basic256Sha256 with password users.

The agent refuses an unknown server certificate (saved in rejected/, fingerprint logged with the
command that trusts it), and a running poller connects as soon as the certificate is trusted
with the real ``edge-agent certs trust`` command. Trust on first use, a wrong password, a policy
the server does not offer, a server that offers only None, and X.509 user login are covered too.
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
import os
import socket
import stat
import sys
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
import pytest_asyncio
from cryptography import x509

from connectors.opcua.client import OpcUaConnector
from connectors.opcua.config import OpcUaMachine
from connectors.opcua.pki import TrustStore
from edge_agent.commands.logs import NOISY_LOGGERS
from edge_agent.core.backoff import Backoff
from edge_agent.core.errors import ConnectError
from edge_agent.core.origin import Origin
from edge_agent.core.samples import Batch, Quality
from edge_agent.runtime.poller import MachinePoller
from simulators import Simulation
from simulators.opcua_security import make_certificate
from tests.helpers.servers import free_port
from tests.helpers.waiting import wait_until

NAMESPACE = "urn:edge-agent:simulator"
PASSWORD = "s3cret-Pw-91"
MACHINE = "pump-1"

pytestmark = pytest.mark.asyncio(loop_scope="module")


@pytest.fixture(scope="module")
def user_certificate(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path, str]:
    """An X.509 user certificate (PEM key, DER certificate) the simulator knows as user 'robot'."""
    cert, key = make_certificate("urn:edge-agent:test:robot", server=False)
    folder = tmp_path_factory.mktemp("user")
    (folder / "robot.der").write_bytes(cert)
    (folder / "robot.key").write_bytes(key)
    return folder / "robot.der", folder / "robot.key", hashlib.sha256(cert).hexdigest()


@pytest_asyncio.fixture(loop_scope="module", scope="module")
async def secure_sim(user_certificate: tuple[Path, Path, str]) -> AsyncIterator[Simulation]:
    """One server for the module (one RSA key): Basic256Sha256 Sign and SignAndEncrypt, two users."""
    users = {"operator": PASSWORD, "robot": f"x509:{user_certificate[2]}"}
    async with Simulation(
        update_interval=0.1, modbus_port=None, opcua_security="Basic256Sha256", opcua_users=users
    ) as sim:
        yield sim
    assert sim.write_count == 0


def config(endpoint: str, pki: Path, **keys: Any) -> OpcUaMachine:
    security = {"pki_dir": str(pki), **keys.pop("security", {})}
    login = {"username": "operator", "password": PASSWORD} if "user_certificate" not in keys else {}
    return OpcUaMachine.model_validate(
        {
            "type": "opcua",
            "id": MACHINE,
            "endpoint": endpoint,
            "interval": "1s",
            "connect_timeout": "10s",
            "security": security,
            "tags": [{"name": "flow", "node": f"nsu={NAMESPACE};s={MACHINE}.flow"}],
            **login,
            **keys,
        }
    )


def agent_logging(caplog: pytest.LogCaptureFixture) -> None:
    """Capture what the agent logs at its most verbose (DEBUG), libraries capped as the agent caps them.

    (asyncua's own DEBUG lines dump whole requests, so edge_agent/commands/logs.py never lets them out.)
    """
    caplog.set_level(logging.DEBUG)
    for noisy in NOISY_LOGGERS:
        caplog.set_level(logging.INFO, logger=noisy)


def server_fingerprint(sim: Simulation) -> str:
    assert sim.opcua.certificate is not None
    return hashlib.sha256(sim.opcua.certificate).hexdigest()


class Collect:
    """A sink that keeps the batches it is given."""

    name = "collect"

    def __init__(self) -> None:
        self.batches: list[Batch] = []

    async def start(self) -> None:
        pass

    async def submit(self, batch: Batch, origin: Origin) -> None:
        self.batches.append(batch)

    def machine_state_changed(self, origin: Origin, state: str, reason: str | None) -> None:
        pass

    async def close(self) -> None:
        pass


async def certs_cli(*argv: str) -> tuple[int, str]:
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "edge_agent",
        "certs",
        *argv,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.STDOUT,
    )
    out = (await asyncio.wait_for(process.communicate(), 60))[0].decode()
    assert process.returncode is not None
    return process.returncode, out


async def test_unknown_server_certificate_is_refused_until_trusted_with_the_cli_while_the_poller_runs(
    secure_sim: Simulation, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    agent_logging(caplog)
    pki = tmp_path / "pki"
    fingerprint = server_fingerprint(secure_sim)
    sink = Collect()
    poller = MachinePoller(
        config(secure_sim.opcua.endpoint, pki),
        Origin("site", "area", "line", MACHINE),
        [sink],
        backoff=Backoff(initial=0.1, cap=0.5),
    )
    task = asyncio.create_task(poller.run(), name="test-poller")
    try:
        store = TrustStore(pki)
        await wait_until(lambda: bool(store.entries(("rejected",))), 20, "the certificate in rejected/")
        [rejected] = store.entries(("rejected",))
        assert rejected.path.read_bytes() == secure_sim.opcua.certificate
        assert rejected.info.fingerprint == fingerprint
        assert poller.stats.failures >= 1
        assert not sink.batches
        refusal = [r.getMessage() for r in caplog.records if fingerprint in r.getMessage()]
        assert refusal, "the refusal names the fingerprint"
        assert f"edge-agent certs trust {fingerprint} --pki-dir {pki}" in refusal[0]

        # The operator trusts it, with colons as OPC UA tools show fingerprints, while the poller runs.
        colons = ":".join(fingerprint[i : i + 2] for i in range(0, 64, 2)).upper()
        code, out = await certs_cli("trust", colons, "--pki-dir", str(pki))
        assert code == 0, out
        assert "no restart needed" in out
        assert [e.state for e in store.entries(("trusted", "rejected"))] == ["trusted"]

        await wait_until(lambda: any(b.good_count for b in sink.batches), 30, "values after the trust")
        assert task.done() is False
        assert isinstance(poller.connector, OpcUaConnector)
        assert poller.connector.session_security == ("Basic256Sha256", "SignAndEncrypt")
        sample = next(b for b in sink.batches if b.good_count).samples[0]
        assert (sample.timestamp_ns, sample.value) in secure_sim.served("opcua", MACHINE, "flow")
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
    assert PASSWORD not in caplog.text


async def test_own_certificate_is_made_once_with_the_application_uri(secure_sim: Simulation, tmp_path: Path) -> None:
    pki = tmp_path / "pki"
    (pki / "trusted").mkdir(parents=True)
    assert secure_sim.opcua.certificate is not None
    (pki / "trusted" / "simulator.der").write_bytes(secure_sim.opcua.certificate)  # trusting by copying works
    fingerprints = []
    for _ in range(2):
        connector = OpcUaConnector(config(secure_sim.opcua.endpoint, pki, security={"mode": "Sign"}))
        await connector.connect()
        try:
            assert connector.session_security == ("Basic256Sha256", "Sign")
            assert (await connector.read()).samples[0].quality is Quality.GOOD
            own = connector.report.own
            assert own is not None
            fingerprints.append(own.fingerprint)
        finally:
            await connector.close()
    assert fingerprints[0] == fingerprints[1], "the certificate is made once and reused"
    uri = f"urn:{socket.gethostname()}:edge-agent"
    cert = x509.load_der_x509_certificate((pki / "own" / "cert.der").read_bytes())
    san = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert san.get_values_for_type(x509.UniformResourceIdentifier) == [uri]
    assert own is not None
    assert own.application_uri == uri
    assert stat.S_IMODE(os.stat(pki / "own" / "key.pem").st_mode) == 0o600
    assert not TrustStore(pki).entries(("rejected",))


async def test_trust_on_first_use_pins_the_first_certificate_and_refuses_another(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    pki = tmp_path / "pki"
    caplog.set_level(logging.WARNING)
    async with Simulation(update_interval=0.1, modbus_port=None, opcua_security="Basic256Sha256") as first:
        port = first.opcua.port
        machine = config(first.opcua.endpoint, pki, security={"trust_on_first_use": True}, username=None, password=None)
        connector = OpcUaConnector(machine)
        await connector.connect()
        await connector.close()
        first_fp = server_fingerprint(first)
    [trusted] = TrustStore(pki).entries(("trusted",))
    assert trusted.info.fingerprint == first_fp
    warnings = [r for r in caplog.records if r.levelno == logging.WARNING and first_fp in r.getMessage()]
    assert warnings
    assert "first use" in warnings[0].getMessage()

    # Another server (a new certificate) answers at the same address: refused, not trusted.
    async with Simulation(
        update_interval=0.1, modbus_port=None, opcua_security="Basic256Sha256", opcua_port=port
    ) as second:
        second_fp = server_fingerprint(second)
        assert second_fp != first_fp
        with pytest.raises(ConnectError, match="different certificate than the one trusted there on first use"):
            await OpcUaConnector(machine).connect()
    store = TrustStore(pki)
    assert [e.info.fingerprint for e in store.entries(("trusted",))] == [first_fp]
    assert [e.info.fingerprint for e in store.entries(("rejected",))] == [second_fp]


async def test_wrong_password_says_whose_login_was_refused_without_the_password(
    secure_sim: Simulation, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    agent_logging(caplog)
    pki = tmp_path / "pki"
    assert secure_sim.opcua.certificate is not None
    TrustStore(pki).save(secure_sim.opcua.certificate, "trusted")
    wrong = "Wr0ng-guess-77"
    connector = OpcUaConnector(config(secure_sim.opcua.endpoint, pki, password=wrong))
    with pytest.raises(ConnectError) as exc:
        await connector.connect()
    message = str(exc.value)
    assert "login as 'operator' was refused (BadUserAccessDenied)" in message
    assert "Fix: check username and password" in message
    assert wrong not in message
    assert wrong not in caplog.text
    await connector.close()


async def test_x509_user_login(
    secure_sim: Simulation, tmp_path: Path, user_certificate: tuple[Path, Path, str]
) -> None:
    pki = tmp_path / "pki"
    assert secure_sim.opcua.certificate is not None
    TrustStore(pki).save(secure_sim.opcua.certificate, "trusted")
    cert, key, _ = user_certificate
    connector = OpcUaConnector(
        config(secure_sim.opcua.endpoint, pki, user_certificate=str(cert), user_private_key=str(key))
    )
    await connector.connect()
    try:
        assert (await connector.read()).samples[0].quality is Quality.GOOD
    finally:
        await connector.close()

    stranger_cert, stranger_key = make_certificate("urn:edge-agent:test:stranger", server=False)
    (tmp_path / "stranger.der").write_bytes(stranger_cert)
    (tmp_path / "stranger.key").write_bytes(stranger_key)
    stranger = OpcUaConnector(
        config(
            secure_sim.opcua.endpoint,
            pki,
            user_certificate=str(tmp_path / "stranger.der"),
            user_private_key=str(tmp_path / "stranger.key"),
        )
    )
    with pytest.raises(ConnectError, match=r"login with the user certificate .* was refused \(BadUserAccessDenied\)"):
        await stranger.connect()
    await stranger.close()


async def test_a_policy_the_server_does_not_offer_lists_the_ones_it_does(
    secure_sim: Simulation, tmp_path: Path
) -> None:
    pki = tmp_path / "pki"
    connector = OpcUaConnector(config(secure_sim.opcua.endpoint, pki, security={"policy": "Aes256_Sha256_RsaPss"}))
    with pytest.raises(ConnectError) as exc:
        await connector.connect()
    message = str(exc.value)
    assert "does not offer Aes256_Sha256_RsaPss SignAndEncrypt" in message
    assert "it offers Basic256Sha256 SignAndEncrypt, Basic256Sha256 Sign" in message
    # security: none against a server without None is refused the same way, never downgraded.
    with pytest.raises(ConnectError, match="does not offer security None; it offers Basic256Sha256"):
        await OpcUaConnector(
            config(secure_sim.opcua.endpoint, pki, security={"policy": "None", "mode": "None"})
        ).connect()
    assert not TrustStore(pki).entries(("trusted", "rejected")), "no server certificate stored without an endpoint"


async def test_a_server_with_only_none_is_refused_with_how_to_allow_it(tmp_path: Path) -> None:
    async with Simulation(update_interval=0.1, modbus_port=None) as plain:
        machine = config(plain.opcua.endpoint, tmp_path / "pki", username=None, password=None)
        with pytest.raises(ConnectError) as exc:
            await OpcUaConnector(machine).connect()
        message = str(exc.value)
        assert "offers only security None" in message
        assert "write security: none in this machine's config" in message
        assert "only on a trusted network" in message
        explicit = OpcUaMachine.model_validate({**machine.model_dump(mode="json"), "security": "none"})
        connector = OpcUaConnector(explicit)
        await connector.connect()
        try:
            assert connector.session_security == ("None", "None")
            assert (await connector.read()).samples[0].quality is Quality.GOOD
        finally:
            await connector.close()
        assert plain.write_count == 0


async def test_subscriptions_work_over_an_encrypted_session(secure_sim: Simulation, tmp_path: Path) -> None:
    pki = tmp_path / "pki"
    assert secure_sim.opcua.certificate is not None
    TrustStore(pki).save(secure_sim.opcua.certificate, "trusted")
    connector = OpcUaConnector(config(secure_sim.opcua.endpoint, pki, mode="subscribe", sampling_interval="100ms"))
    await connector.connect()
    try:
        assert connector.session_security == ("Basic256Sha256", "SignAndEncrypt")
        samples: list[Any] = []

        async def changes_arrive() -> bool:
            samples.extend((await connector.read()).samples)
            return len(samples) >= 3

        await wait_until(changes_arrive, 20, "changes over the encrypted subscription", interval=0.2)
        served = set(secure_sim.served("opcua", MACHINE, "flow"))
        assert all(s.quality is Quality.GOOD for s in samples)
        assert all((s.timestamp_ns, s.value) in served for s in samples)
    finally:
        await connector.close()


async def test_a_server_that_refuses_the_agents_certificate_is_told_which_one_to_trust(tmp_path: Path) -> None:
    """Most servers refuse an unknown client certificate at CreateSession; the fix names the agent's file."""
    from asyncua import ua
    from asyncua.common.utils import ServiceError
    from asyncua.server.server import Server
    from asyncua.ua.status_codes import StatusCodes

    cert, key = await asyncio.to_thread(make_certificate, "urn:edge-agent:test:strict-server")
    server = Server()
    await server.init()
    server.set_endpoint("opc.tcp://127.0.0.1:0/strict/")
    server.disable_clock(True)
    await server.load_certificate(cert, format="der")
    await server.load_private_key(key, format="der")
    server.set_security_policy([ua.SecurityPolicyType.Basic256Sha256_SignAndEncrypt])

    async def refuse(_certificate: x509.Certificate, _app: ua.ApplicationDescription) -> None:
        raise ServiceError(StatusCodes.BadCertificateUntrusted)

    server.set_certificate_validator(refuse)
    await server.start()
    try:
        assert server.bserver is not None
        endpoint = f"opc.tcp://127.0.0.1:{server.bserver.port}/strict/"
        pki = tmp_path / "pki"
        TrustStore(pki).save(cert, "trusted")
        connector = OpcUaConnector(config(endpoint, pki, username=None, password=None))
        with pytest.raises(ConnectError) as exc:
            await connector.connect()
        await connector.close()
        own_fp = hashlib.sha256((pki / "own" / "cert.der").read_bytes()).hexdigest()
        message = str(exc.value)
        assert "the server refused the agent's certificate (BadCertificateUntrusted)" in message
        assert f"Fix: trust it on the server: {pki / 'own' / 'cert.der'}" in message
        assert own_fp in message
        assert f"ApplicationUri urn:{socket.gethostname()}:edge-agent" in message
    finally:
        await server.stop()


async def test_a_certificate_refused_after_the_server_was_away_is_still_logged_once(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """The runtime logs only the start of a down period; the fingerprint must not hide in debug logs."""
    caplog.set_level(logging.WARNING)
    port = free_port()
    machine = config(f"opc.tcp://127.0.0.1:{port}/edge-sim/", tmp_path / "pki", username=None, password=None)
    connector = OpcUaConnector(machine)
    with pytest.raises(ConnectError, match="cannot connect"):
        await connector.connect()
    assert not [r for r in caplog.records if r.name.startswith("connectors")], "the runtime logs that one"
    async with Simulation(
        update_interval=0.1, modbus_port=None, opcua_security="Basic256Sha256", opcua_port=port
    ) as late:
        for _ in range(3):
            with pytest.raises(ConnectError, match="certificate"):
                await connector.connect()
        fingerprint = server_fingerprint(late)
    logged = [r.getMessage() for r in caplog.records if fingerprint in r.getMessage()]
    assert len(logged) == 1, logged
    assert f"edge-agent certs trust {fingerprint}" in logged[0]
    await connector.close()


def expired_certificate(uri: str) -> tuple[bytes, bytes]:
    """A server certificate (DER) and key (DER) that expired yesterday."""
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import rsa
    from cryptography.x509.oid import NameOID

    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "expired server")])
    now = datetime.now(UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - timedelta(days=30))
        .not_valid_after(now - timedelta(days=1))
        .add_extension(x509.SubjectAlternativeName([x509.UniformResourceIdentifier(uri)]), critical=False)
        .sign(key, hashes.SHA256())
    )
    der_key = key.private_bytes(
        serialization.Encoding.DER, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )
    return cert.public_bytes(serialization.Encoding.DER), der_key


async def test_an_expired_server_certificate_is_refused_even_when_trusted(tmp_path: Path) -> None:
    from asyncua import ua
    from asyncua.server.server import Server

    cert, key = await asyncio.to_thread(expired_certificate, "urn:edge-agent:test:expired")
    server = Server()
    await server.init()
    server.set_endpoint("opc.tcp://127.0.0.1:0/expired/")
    server.disable_clock(True)
    await server.load_certificate(cert, format="der")
    await server.load_private_key(key, format="der")
    server.set_security_policy([ua.SecurityPolicyType.Basic256Sha256_SignAndEncrypt])
    await server.start()
    try:
        assert server.bserver is not None
        pki = tmp_path / "pki"
        TrustStore(pki).save(cert, "trusted")
        endpoint = f"opc.tcp://127.0.0.1:{server.bserver.port}/expired/"
        connector = OpcUaConnector(config(endpoint, pki, username=None, password=None))
        with pytest.raises(ConnectError) as exc:
            await connector.connect()
        await connector.close()
        message = str(exc.value)
        assert "the server's certificate (CN=expired server" in message
        assert f"expired on {(datetime.now(UTC) - timedelta(days=1)):%Y-%m-%d}" in message
        assert "Fix: renew the server's application certificate" in message
    finally:
        await server.stop()
