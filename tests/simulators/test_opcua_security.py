"""Basic256Sha256 and password users on the simulator's OPC UA server, with real clients."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest
import pytest_asyncio
from asyncua import ua
from asyncua.crypto.security_policies import SecurityPolicyBasic256Sha256
from asyncua.ua.uaerrors import BadIdentityTokenRejected, BadUserAccessDenied, UaError

from simulators import Simulation, SimulatorError
from simulators.opcua_security import make_certificate
from simulators.opcua_server import string_node
from simulators.register_map import NAMESPACE_URI
from tests.helpers.opcua_reads import Client, source_ns, value_of

CLIENT_URI = "urn:edge-agent:simulator:test-client"

pytestmark = pytest.mark.asyncio(loop_scope="module")


@pytest.fixture(scope="module")
def client_certificate() -> tuple[bytes, bytes]:
    return make_certificate(CLIENT_URI, server=False)


@pytest_asyncio.fixture(loop_scope="module", scope="module")
async def secure_sim() -> AsyncIterator[Simulation]:
    """Shared by the module's tests (they only connect and read): one key pair, one server start."""
    async with Simulation(
        update_interval=0.05, modbus_port=None, opcua_security="Basic256Sha256", opcua_users={"operator": "s3cret"}
    ) as sim:
        yield sim


async def secure_client(sim: Simulation, certificate: tuple[bytes, bytes], password: str) -> Client:
    client = Client(sim.opcua.endpoint, timeout=5)
    client.application_uri = CLIENT_URI
    cert, key = certificate
    await client.set_security(
        SecurityPolicyBasic256Sha256,
        certificate=cert,
        private_key=key,
        server_certificate=sim.opcua.certificate,
        mode=ua.MessageSecurityMode.SignAndEncrypt,
    )
    client.set_user("operator")
    client.set_password(password)
    return client


async def test_encrypted_session_with_the_right_password_reads_served_values(
    secure_sim: Simulation, client_certificate: tuple[bytes, bytes]
) -> None:
    assert secure_sim.opcua.certificate is not None
    async with await secure_client(secure_sim, client_certificate, "s3cret") as client:
        idx = await client.get_namespace_index(NAMESPACE_URI)
        value = await client.get_node(string_node("pump-1.flow", idx)).read_data_value()
        stamp_ns = source_ns(value)
        assert (stamp_ns, value_of(value)) in secure_sim.served("opcua", "pump-1", "flow")
    assert secure_sim.write_count == 0


async def test_wrong_password_and_no_security_are_refused(
    secure_sim: Simulation, client_certificate: tuple[bytes, bytes]
) -> None:
    with pytest.raises(BadUserAccessDenied):
        async with await secure_client(secure_sim, client_certificate, "guess"):
            pass
    with pytest.raises(UaError, match="No matching endpoints"):
        async with Client(secure_sim.opcua.endpoint, timeout=3):  # security None is not offered
            pass


async def test_users_without_encryption_refuse_anonymous_sessions() -> None:
    async with Simulation(modbus_port=None, opcua_users={"operator": "s3cret"}) as sim:
        with pytest.raises(BadIdentityTokenRejected):
            async with Client(sim.opcua.endpoint, timeout=5):
                pass
        client = Client(sim.opcua.endpoint, timeout=5)
        client.set_user("operator")
        client.set_password("s3cret")
        async with client:
            assert NAMESPACE_URI in await client.get_namespace_array()


async def test_unknown_security_mode_is_refused() -> None:
    with pytest.raises(SimulatorError, match="opcua_security"):
        Simulation(opcua_security="Basic128Rsa15")  # type: ignore[arg-type]
