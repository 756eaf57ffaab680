"""Choosing an OPC UA endpoint (pure): the strongest offered policy, never a silent downgrade."""

from __future__ import annotations

from typing import Any

import pytest
from asyncua import ua

from connectors.opcua.config import OpcUaSecurity
from connectors.opcua.handshake import password_in_clear
from connectors.opcua.security import POLICY_PREFIX, choose_endpoint, offer_of
from edge_agent.core.errors import EndpointChoiceError

MODES = {"None": ua.MessageSecurityMode.None_, "Sign": ua.MessageSecurityMode.Sign}
MODES["SignAndEncrypt"] = ua.MessageSecurityMode.SignAndEncrypt


def endpoint(policy: str, mode: str, *, url: str = "opc.tcp://plc:4840", token_policy: str | None = "") -> Any:
    described = ua.EndpointDescription()
    described.EndpointUrl = url
    described.SecurityPolicyUri = POLICY_PREFIX + policy
    described.SecurityMode = MODES[mode]
    token = ua.UserTokenPolicy()
    token.TokenType = ua.UserTokenType.UserName
    token.SecurityPolicyUri = None if token_policy is None else (POLICY_PREFIX + token_policy if token_policy else "")
    described.UserIdentityTokens = [token]
    return described


def security(**keys: Any) -> OpcUaSecurity:
    return OpcUaSecurity.model_validate(keys)


PLC = [
    endpoint("None", "None"),
    endpoint("Basic256Sha256", "Sign"),
    endpoint("Basic256Sha256", "SignAndEncrypt"),
    endpoint("Aes128_Sha256_RsaOaep", "SignAndEncrypt"),
    endpoint("Basic128Rsa15", "SignAndEncrypt"),
]


def chosen(endpoints: list[Any], **keys: Any) -> str:
    return str(offer_of(choose_endpoint(endpoints, security(**keys))))


def test_auto_takes_the_strongest_offered_in_the_configured_mode() -> None:
    assert chosen(PLC) == "Aes128_Sha256_RsaOaep SignAndEncrypt"
    assert chosen([*PLC, endpoint("Aes256_Sha256_RsaPss", "SignAndEncrypt")]) == "Aes256_Sha256_RsaPss SignAndEncrypt"
    assert chosen(PLC, mode="Sign") == "Basic256Sha256 Sign"
    assert chosen(PLC, policy="Basic256Sha256") == "Basic256Sha256 SignAndEncrypt"
    assert chosen(PLC, policy="None", mode="None") == "None"


def test_endpoints_that_are_not_opc_tcp_are_ignored() -> None:
    https = endpoint("Aes256_Sha256_RsaPss", "SignAndEncrypt", url="https://plc:443")
    assert chosen([*PLC, https]) == "Aes128_Sha256_RsaOaep SignAndEncrypt"


@pytest.mark.parametrize(
    ("offers", "keys", "message"),
    [
        (
            PLC,
            {"policy": "Aes256_Sha256_RsaPss"},
            "does not offer Aes256_Sha256_RsaPss SignAndEncrypt; it offers Aes128_Sha256_RsaOaep SignAndEncrypt, "
            "Basic256Sha256 SignAndEncrypt, Basic256Sha256 Sign, Basic128Rsa15 SignAndEncrypt, None",
        ),
        ([endpoint("None", "None")], {}, "offers only security None"),
        (
            [endpoint("Basic128Rsa15", "SignAndEncrypt"), endpoint("None", "None")],
            {},
            "none of the policies the agent speaks (Aes256_Sha256_RsaPss, Aes128_Sha256_RsaOaep, Basic256Sha256)",
        ),
        ([endpoint("Basic256Sha256", "Sign")], {}, "Fix: set security.mode: Sign, or enable SignAndEncrypt"),
        ([endpoint("Basic256Sha256", "SignAndEncrypt")], {"policy": "None", "mode": "None"}, "not offer security None"),
        ([], {}, "offers only security None (no signing"),
    ],
)
def test_no_fitting_endpoint_names_what_is_offered_and_never_downgrades(
    offers: list[Any], keys: dict[str, str], message: str
) -> None:
    with pytest.raises(EndpointChoiceError) as exc:
        choose_endpoint(offers, security(**keys))
    assert message in str(exc.value)
    assert "Fix:" in str(exc.value)


def test_a_password_is_in_clear_only_without_encryption_of_channel_or_token() -> None:
    assert not password_in_clear(endpoint("Basic256Sha256", "SignAndEncrypt", token_policy="None"))
    assert not password_in_clear(endpoint("Basic256Sha256", "Sign", token_policy=""))  # the channel's policy
    assert not password_in_clear(endpoint("None", "None", token_policy="Basic256Sha256"))
    assert password_in_clear(endpoint("Basic256Sha256", "Sign", token_policy="None"))
    assert password_in_clear(endpoint("None", "None", token_policy=""))
    assert password_in_clear(endpoint("None", "None", token_policy=None))
