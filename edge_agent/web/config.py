"""The ``web:`` section: where the status page listens and who may see it.

The page shows live plant data and, in the demo, can inject faults, so it listens on loopback
only unless told otherwise; bound to anything a second computer can reach, it refuses to start
without a login (basic auth or a token). That rule is checked when the config is loaded, so the
loader reports it with the file, line and fix, and again by the server, so a config object built
in code cannot bypass it.

``limits`` keeps the page from becoming the way to stop the plant's data: the page runs in the
agent's own process, so every socket it holds is a file descriptor the pollers and the outbox
also need, and every guess at its password is work on the loop that polls the machines.
"""

from __future__ import annotations

import ipaddress
from typing import Self

from pydantic import Field, SecretStr, model_validator

from edge_agent.core.config_base import StrictModel
from edge_agent.core.durations import Duration

LOOPBACK_NAMES = frozenset({"localhost", "localhost.localdomain", "ip6-localhost"})
MIN_TOKEN_LENGTH = 16
MIN_PASSWORD_LENGTH = 12
"""OWASP ASVS 2.1.1; with the per-address backoff an online guesser gets a few hundred tries a day."""


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


class WebLimits(StrictModel):
    """How much one client (or a flood of them) may take of the page, and so of the agent."""

    connections: int = Field(
        default=128,
        ge=2,
        le=10000,
        description="Open connections at most; at the limit the longest-idle one is closed for a new one.",
    )
    streams: int = Field(
        default=32, ge=1, le=10000, description="Live-update streams (open browser tabs) at most; more get 503."
    )
    request_timeout: Duration = Field(
        default=10.0,
        gt=0,
        le=3600,
        description="A request's headers (and body) must arrive within this; idle connections close after it.",
    )
    login_failures: int = Field(
        default=5, ge=1, le=1000, description="Wrong logins from one address before it has to wait."
    )
    login_lockout: Duration = Field(
        default=1.0, gt=0, le=86400, description="The first wait; it doubles with every further wrong login."
    )
    login_lockout_max: Duration = Field(default=300.0, gt=0, le=86400, description="The longest wait.")

    @model_validator(mode="after")
    def _consistent(self) -> Self:
        if self.streams > self.connections:
            raise ValueError(
                f"web.limits.streams ({self.streams}) is more than web.limits.connections ({self.connections}). "
                "Fix: each stream holds a connection; raise connections or lower streams"
            )
        if self.login_lockout_max < self.login_lockout:
            raise ValueError("web.limits.login_lockout_max is shorter than login_lockout. Fix: raise it")
        return self


class WebTls(StrictModel):
    """HTTPS for the page: a certificate (with its chain) and its private key, both PEM files."""

    cert: str = Field(min_length=1, description="PEM certificate chain file (the server's certificate first).")
    key: str = Field(min_length=1, description="PEM private key file (readable by the agent only).")


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
    session_lifetime: Duration = Field(
        default=12 * 3600.0,
        gt=0,
        le=30 * 86400,
        description="How long a kiosk's login cookie (from /?token=...) lasts without use; renewed while used.",
    )
    tls: WebTls | None = Field(default=None, description="Serve HTTPS with this certificate and key.")
    limits: WebLimits = Field(default_factory=WebLimits, description="Connection, stream and login limits.")

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
    def scheme(self) -> str:
        """``https`` with ``tls``, else ``http``."""
        return "https" if self.tls is not None else "http"

    @property
    def login_required(self) -> bool:
        """Whether any credential is configured (then every request must carry one)."""
        return self.basic_auth or self.token is not None

    def login_problem(self) -> str | None:
        """What is wrong with the login settings, with the fix; None when they are fine."""
        if (self.username is None) != (self.password is None):
            have, missing = ("username", "password") if self.username is not None else ("password", "username")
            return f"web.{have} is set but web.{missing} is not. Fix: set both (basic auth) or neither"
        if self.password is not None and len(self.password.get_secret_value()) < MIN_PASSWORD_LENGTH:
            return (
                f"web.password is shorter than {MIN_PASSWORD_LENGTH} characters. "
                "Fix: use a long random one, e.g. the output of `openssl rand -base64 18`"
            )
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
