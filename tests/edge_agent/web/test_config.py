"""The ``web:`` section: loopback by default, a login required anywhere else, secrets kept secret."""

from __future__ import annotations

import pytest
from pydantic import ValidationError

from edge_agent.web import WebConfig, is_loopback


@pytest.mark.parametrize("host", ["127.0.0.1", "127.0.0.2", "127.255.0.9", "::1", "[::1]", "localhost", "LOCALHOST"])
def test_loopback_addresses(host: str) -> None:
    assert is_loopback(host)
    assert WebConfig(host=host).login_required is False


@pytest.mark.parametrize("host", ["0.0.0.0", "::", "", "192.168.1.20", "10.0.0.5", "line-pc.local", "fe80::1"])
def test_anything_else_needs_a_login(host: str) -> None:
    assert not is_loopback(host)
    with pytest.raises(ValidationError, match=r"web.host is .*no login is configured\. Fix: set web.username"):
        WebConfig(host=host)
    assert WebConfig(host=host, username="shift", password="lead-pass-4291").login_required
    assert WebConfig(host=host, token="0123456789abcdef").login_required
    assert WebConfig(host=host, enabled=False).enabled is False  # switched off: nothing listens


def test_defaults() -> None:
    config = WebConfig()
    assert (config.enabled, config.host, config.port) == (True, "127.0.0.1", 8080)
    assert (config.username, config.password, config.token) == (None, None, None)


@pytest.mark.parametrize(
    ("keys", "message"),
    [
        ({"username": "shift"}, "web.username is set but web.password is not"),
        ({"password": "lead-pass-4291"}, "web.password is set but web.username is not"),
        ({"token": "short"}, "web.token is shorter than 16 characters"),
        ({"port": 70000}, "less than or equal to 65535"),
        ({"hots": "0.0.0.0"}, "Extra inputs are not permitted"),
    ],
)
def test_mistakes_are_named_with_the_fix(keys: dict[str, object], message: str) -> None:
    with pytest.raises(ValidationError, match=message):
        WebConfig.model_validate(keys)


def test_secrets_do_not_show_in_reprs_or_dumps() -> None:
    config = WebConfig(host="0.0.0.0", username="shift", password="lead-pass-4291", token="0123456789abcdef-secret")
    for text in (repr(config), str(config), config.model_dump_json()):
        assert "lead-pass-4291" not in text
        assert "0123456789abcdef-secret" not in text
