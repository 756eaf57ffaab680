"""The ``web:`` section: where the status page listens and who may see it.

The page shows live plant data and, in the demo, can inject faults, so it listens on loopback
only unless told otherwise; bound to anything a second computer can reach, it refuses to start
without a login (basic auth or a token). That rule is checked when the config is loaded, so the
loader reports it with the file, line and fix, and again by the server, so a config object built
in code cannot bypass it.
"""

from __future__ import annotations

import ipaddress
from typing import Self

from pydantic import Field, SecretStr, model_validator

from edge_agent.core.config_base import StrictModel

LOOPBACK_NAMES = frozenset({"localhost", "localhost.localdomain", "ip6-localhost"})
MIN_TOKEN_LENGTH = 16


def is_loopback(host: str) -> bool:
    """True when only this computer can reach ``host`` (127.0.0.0/8, ::1, localhost).

    An empty host or a wildcard (``0.0.0.0``, ``::``) listens on every interface and is not
    loopback; neither is any other name, since it may resolve to a reachable address.
    """
    text = host.strip().strip("[]").lower()
    if text in LOOPBACK_NAMES:
        return True
    try:
        return ipaddress.ip_address(text).is_loopback
    except ValueError:
        return False


class WebConfig(StrictModel):
    """The status page and ``/metrics`` (``edge-agent run`` and ``demo``)."""

    enabled: bool = Field(default=True, description="Serve the status page when this section is present.")
    host: str = Field(
        default="127.0.0.1",
        description="Address to listen on. Anything but loopback (127.0.0.1, ::1, localhost) requires a login.",
    )
    port: int = Field(default=8080, ge=0, le=65535, description="TCP port; 0 picks any free port.")
    username: str | None = Field(default=None, min_length=1, description="Basic-auth user (with password).")
    password: SecretStr | None = Field(default=None, description="Basic-auth password; write ${ENV} or ${file:...}.")
    token: SecretStr | None = Field(
        default=None,
        description=f"Bearer token (at least {MIN_TOKEN_LENGTH} characters) for scrapers and kiosk URLs (/?token=...).",
    )

    @model_validator(mode="after")
    def _login_is_complete(self) -> Self:
        problem = self.login_problem()
        if problem is not None:
            raise ValueError(problem)
        return self

    @property
    def basic_auth(self) -> bool:
        """Whether a username and password are configured."""
        return self.username is not None and self.password is not None

    @property
    def login_required(self) -> bool:
        """Whether any credential is configured (then every request must carry one)."""
        return self.basic_auth or self.token is not None

    def login_problem(self) -> str | None:
        """What is wrong with the login settings, with the fix; None when they are fine."""
        if (self.username is None) != (self.password is None):
            have, missing = ("username", "password") if self.username is not None else ("password", "username")
            return f"web.{have} is set but web.{missing} is not. Fix: set both (basic auth) or neither"
        if self.token is not None and len(self.token.get_secret_value()) < MIN_TOKEN_LENGTH:
            return (
                f"web.token is shorter than {MIN_TOKEN_LENGTH} characters. "
                "Fix: use a long random token, e.g. the output of `openssl rand -hex 16`"
            )
        if self.enabled and not is_loopback(self.host) and not self.login_required:
            return (
                f"web.host is {self.host!r}, which other computers can reach, but no login is configured. "
                "Fix: set web.username and web.password (or web.token), e.g. password: ${EDGE_WEB_PASSWORD}, "
                "or listen on loopback only with host: 127.0.0.1"
            )
        return None
