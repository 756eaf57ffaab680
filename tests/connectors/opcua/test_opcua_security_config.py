"""The OPC UA security and login keys: secure by default, ``none`` only when written, clear errors."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from pydantic import ValidationError

from connectors.opcua.config import OpcUaMachine
from edge_agent.core.errors import ConfigError
from edge_agent.runtime.loader import parse_config


def opcua(**machine: Any) -> OpcUaMachine:
    return OpcUaMachine.model_validate(
        {"type": "opcua", "id": "o", "endpoint": "opc.tcp://127.0.0.1:4840", "tags": [{"name": "a", "node": "i=2258"}]}
        | machine
    )


def test_the_default_is_the_strongest_policy_signed_and_encrypted_without_trust_on_first_use(
    own_state_directory: Path,
) -> None:
    security = opcua().security
    assert (security.policy, security.mode, security.trust_on_first_use) == ("auto", "SignAndEncrypt", False)
    assert security.enabled
    assert security.effective_pki_dir == own_state_directory / "pki"


def test_none_is_written_out_as_shorthand_or_mapping_and_both_survive_a_dump() -> None:
    for written in ("none", "None", {"policy": "None", "mode": "None"}):
        machine = opcua(security=written)
        assert (machine.security.policy, machine.security.mode) == ("None", "None")
        assert not machine.security.enabled
        for unset, defaults in ((False, False), (True, False), (False, True)):
            dumped = machine.model_dump(mode="json", exclude_unset=unset, exclude_defaults=defaults)
            assert OpcUaMachine.model_validate(dumped) == machine


@pytest.mark.parametrize(
    ("security", "expected"),
    [
        ({"policy": "None"}, "security.policy None sends everything unsigned, which contradicts mode SignAndEncrypt"),
        ({"policy": "None", "mode": "Sign"}, "Fix: remove policy"),
        ({"mode": "None"}, "security.mode None turns security off, which contradicts policy auto"),
        ({"policy": "Basic256Sha256", "mode": "None"}, "Fix: write mode: SignAndEncrypt (or Sign), or security: none"),
        ("off", "security must be 'none' or a mapping"),
        ({"policy": "Basic128Rsa15"}, "'auto', 'Aes256_Sha256_RsaPss', 'Aes128_Sha256_RsaOaep', 'Basic256Sha256'"),
        ({"mode": "Encrypt"}, "'SignAndEncrypt', 'Sign' or 'None'"),
        ({"certificate": "/etc/edge-agent/agent.der"}, "security.certificate is set but security.private_key is not"),
        ({"private_key": "/etc/edge-agent/agent.pem"}, "security.private_key is set but security.certificate is not"),
        ("none", None),
        ({"policy": "None", "mode": "None", "trust_on_first_use": True}, "trust_on_first_use has no effect"),
        ({"trust_on_first_use": "sometimes"}, "valid boolean"),
        ({"pki": "/tmp"}, "Extra inputs are not permitted"),
        ({"pki_dir": "pki"}, "security.pki_dir 'pki' is a relative path"),
        ({"certificate": "agent.der", "private_key": "/k.pem"}, "Fix: write it as an absolute path"),
        ({"pki_dir": "~/pki"}, None),
    ],
)
def test_bad_security_is_refused_with_the_fix(security: Any, expected: str | None) -> None:
    if expected is None:
        opcua(security=security)
        return
    with pytest.raises(ValidationError) as exc:
        opcua(security=security)
    assert expected in str(exc.value)


@pytest.mark.parametrize(
    ("login", "expected"),
    [
        ({"user_certificate": "u.der"}, "user_certificate is set but user_private_key is not. Fix: give both"),
        ({"user_private_key": "u.pem"}, "user_private_key is set but user_certificate is not"),
        (
            {"user_certificate": "u.der", "user_private_key": "u.pem", "username": "op", "password": "pw-x1"},
            "user_certificate and username/password are two ways to log in",
        ),
        ({"user_certificate": "u.der", "user_private_key": "u.pem", "username": "op"}, "Fix: remove username"),
        ({"password": "pw-x1"}, "password is set but username is not"),
        ({"user_certificate": "u.der", "user_private_key": "/u.pem"}, "user_certificate 'u.der' is a relative path"),
    ],
)
def test_bad_login_keys_are_refused_with_the_fix(login: dict[str, str], expected: str) -> None:
    keys = "".join(f"    {key}: {value}\n" for key, value in login.items())
    text = f"machines:\n  - id: o\n    type: opcua\n    endpoint: opc.tcp://10.0.0.5:4840\n{keys}    tags: []\n"
    text = text.replace("tags: []", 'tags: [{name: a, node: "i=2258"}]')
    with pytest.raises(ConfigError) as exc:
        parse_config(text, file="plant.yaml")
    assert expected in str(exc.value)
    assert "pw-x1" not in str(exc.value), "the loader's message never shows the password"


def test_the_loader_names_file_line_and_key_for_a_contradiction() -> None:
    text = """\
machines:
  - id: press-1
    type: opcua
    endpoint: opc.tcp://10.0.0.5:4840
    security:
      policy: None
      mode: SignAndEncrypt
    tags:
      - {name: a, node: "i=2258"}
"""
    with pytest.raises(ConfigError) as exc:
        parse_config(text, file="plant.yaml")
    message = str(exc.value)
    assert "plant.yaml" in message
    assert "security" in message
    assert "Fix: remove policy" in message


def test_a_machine_with_security_none_and_one_with_the_default_load_side_by_side() -> None:
    text = """\
machines:
  - id: old-plc
    type: opcua
    endpoint: opc.tcp://10.0.0.5:4840
    security: none
    tags: [{name: a, node: "i=2258"}]
  - id: new-plc
    type: opcua
    endpoint: opc.tcp://10.0.0.6:4840
    security: {trust_on_first_use: true, pki_dir: /var/lib/edge-agent/pki}
    username: reader
    password: ${OPCUA_TEST_PASSWORD:-pw}
    tags: [{name: a, node: "i=2258"}]
"""
    old, new = parse_config(text, file="plant.yaml").machines
    assert not old.security.enabled  # type: ignore[union-attr]
    assert new.security.trust_on_first_use  # type: ignore[union-attr]
    assert new.security.effective_pki_dir == Path("/var/lib/edge-agent/pki")  # type: ignore[union-attr]
