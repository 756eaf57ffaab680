"""Opening an OPC UA session, and saying why it did not open with the fix.

The connector calls ``open_session`` once per connect; everything here is about getting from an
endpoint URL to an activated session by a deadline, and about turning the library's failures
(status codes, asyncua's own assertions, dropped sockets) into one ``ConnectError`` whose message
names the cause and what to change, never the password.
"""

from __future__ import annotations

import asyncio
import logging

from asyncua import ua
from asyncua.client.client import Client
from asyncua.ua.status_codes import StatusCodes
from asyncua.ua.uaerrors import UaError, UaStatusCodeError

from connectors.opcua.config import OpcUaMachine
from connectors.opcua.convert import status_name
from connectors.opcua.deadline import until, within
from connectors.opcua.handshake import Login, SessionReport, Target, secure
from connectors.opcua.own_cert import OwnCertificate
from edge_agent.core.errors import ConnectError

_log = logging.getLogger(__name__)

LINK_ERRORS: tuple[type[BaseException], ...] = (OSError, ConnectionError, EOFError, UaError)
"""What asyncua raises when the socket, channel or session fails."""

_LOGIN_CODES = frozenset(
    {
        StatusCodes.BadUserAccessDenied,
        StatusCodes.BadIdentityTokenRejected,
        StatusCodes.BadIdentityTokenInvalid,
        StatusCodes.BadUserSignatureInvalid,
    }
)
"""Connect failures that mean the login was refused."""

_CERTIFICATE_CODES = frozenset(
    {
        StatusCodes.BadSecurityChecksFailed,
        StatusCodes.BadCertificateUntrusted,
        StatusCodes.BadCertificateInvalid,
        StatusCodes.BadCertificateUriInvalid,
        StatusCodes.BadCertificateTimeInvalid,
        StatusCodes.BadCertificateUseNotAllowed,
        StatusCodes.BadCertificateHostNameInvalid,
        StatusCodes.BadCertificateRevoked,
        StatusCodes.BadCertificateIssuerRevocationUnknown,
        StatusCodes.BadCertificateRevocationUnknown,
        StatusCodes.BadSecurityPolicyRejected,
    }
)
"""Connect failures that mean the server refused the agent's application certificate."""


class _ChannelRefused(UaError):
    """The server answered OpenSecureChannel with an error, and asyncua (2.1) failed its own
    ``assert isinstance(..., OpenSecureChannelResponse)`` instead of raising the status code."""

    def __str__(self) -> str:
        return "the server refused to open a secure channel"


def new_client(config: OpcUaMachine) -> Client:
    """An asyncua client for ``config``'s endpoint, with timeouts that suit a poller."""
    client = Client(
        config.endpoint,
        # Per request. Connect-time requests (a large CreateMonitoredItems) may take the whole
        # connect_timeout; a poll's Read is bounded by the connector's own timeout anyway.
        timeout=max(config.effective_timeout, config.effective_connect_timeout),
        # asyncua probes ServerState this often and gives the probe as long: at its default of
        # 1 s a busy server misses it and asyncua drops a healthy link.
        watchdog_intervall=max(5.0, config.effective_timeout),
    )
    client.name = client.description = f"edge-agent {config.id}"
    # Ask for a session that outlives a few polls but not a vanished agent by much (servers cap
    # it anyway; asyncua's default of an hour only earns a warning at every connect).
    client.session_timeout = int(max(60.0, 3 * config.interval) * 1000)
    return client


def session_target(config: OpcUaMachine) -> Target:
    """What the handshake needs to know about the machine: endpoint, security, login, time limit."""
    login = Login(config.username, config.password, config.user_certificate, config.user_private_key)
    return Target(config.id, config.endpoint, config.security, login, config.effective_connect_timeout)


async def open_session(
    client: Client,
    config: OpcUaMachine,
    report: SessionReport,
    deadline: float,
    *,
    probe: bool,
    own: OwnCertificate | None,
) -> None:
    """Endpoint, trust, socket, channel and session by ``deadline``; failures become ``ConnectError``.

    A failed client is torn down before the error is raised; on cancellation its socket is dropped
    at once, without waiting on the server.
    """
    target = session_target(config)
    try:
        async with until(deadline):
            await secure(client, target, report, probe=probe, own=own)
            try:
                await client.connect()
            except AssertionError as exc:
                raise _ChannelRefused from exc
    except TimeoutError as exc:
        await discard(client, config)
        raise ConnectError(
            config.id,
            f"no answer from {config.endpoint} within {config.effective_connect_timeout:g} s. "
            "Check the endpoint and that the server is running",
        ) from exc
    except ConnectError:
        await discard(client, config)
        raise
    except LINK_ERRORS as exc:
        await discard(client, config)
        raise ConnectError(config.id, session_failure(config, report, exc, target)) from exc
    except asyncio.CancelledError:
        abort(client)
        raise


def session_failure(config: OpcUaMachine, report: SessionReport, exc: BaseException, target: Target) -> str:
    """What went wrong opening the session, and the fix; never the password."""
    code = exc.code if isinstance(exc, UaStatusCodeError) else None
    if code in _LOGIN_CODES:
        if config.username is not None:
            problem = (
                f"login as {config.username!r} was refused ({status_name(ua.StatusCode(code))}). "
                "Fix: check username and password (the password is never shown)"
            )
        elif config.user_certificate is not None:
            problem = (
                f"login {report.login or target.login.describe()} was refused ({status_name(ua.StatusCode(code))})."
                " Fix: register that user certificate on the server (its user certificate store), or check "
                "user_certificate and user_private_key"
            )
        else:
            problem = (
                f"the server refused an anonymous session ({status_name(ua.StatusCode(code))}). "
                "Fix: set username and password, or user_certificate and user_private_key"
            )
        report.login_problem = problem
        return f"{config.endpoint}: {problem}"
    own = report.own
    if isinstance(exc, _ChannelRefused) and own is not None:
        return (
            f"{config.endpoint}: the server refused to open a secure channel (asyncua does not pass on its "
            "status code; the usual cause is that the server does not trust the agent's certificate). "
            f"Fix: trust it on the server: {own.cert_path} (ApplicationUri {own.application_uri}, SHA-256 "
            f"{own.fingerprint}); most servers keep it in their rejected-certificates folder until it is moved"
        )
    if code in _CERTIFICATE_CODES and own is not None:
        return (
            f"{config.endpoint}: the server refused the agent's certificate ({status_name(ua.StatusCode(code))}). "
            f"Fix: trust it on the server: {own.cert_path} (ApplicationUri {own.application_uri}, SHA-256 "
            f"{own.fingerprint}); most servers keep it in their rejected-certificates folder until it is moved"
        )
    if isinstance(exc, UaError) and "certificate mismatch" in str(exc).lower():
        return (
            f"{config.endpoint}: the server presented a different certificate when opening the session than "
            "in its endpoint description, so it was refused. Fix: check the server's certificate configuration"
        )
    hint = ""
    if own is not None and isinstance(exc, (ConnectionError, EOFError)):
        hint = (
            f". If this persists, the server may not trust the agent's certificate: trust {own.cert_path} "
            f"(SHA-256 {own.fingerprint}) on the server"
        )
    return f"cannot connect to {config.endpoint}: {describe(exc)}{hint}"


async def discard(client: Client, config: OpcUaMachine) -> None:
    """Tear ``client`` down as far as it got; never raises."""
    try:
        async with within(config.effective_connect_timeout):
            await client.disconnect()
    except Exception:  # noqa: BLE001 - teardown of a failed link must never raise
        _log.debug("machine %r: error while disconnecting", config.id, exc_info=True)
    try:
        client.disconnect_socket()
    except Exception:  # noqa: BLE001
        _log.debug("machine %r: error while closing the socket", config.id, exc_info=True)


def abort(client: Client) -> None:
    """Drop a half-open link at once, without waiting on the server (we are being cancelled)."""
    try:
        client.disconnect_socket()
    except Exception:  # noqa: BLE001 - nothing useful to do with a failure here
        _log.debug("error while dropping a half-open OPC UA link", exc_info=True)


def describe(exc: BaseException) -> str:
    """An exception as ``Type: message`` for a log line or an error (the type alone when it says nothing)."""
    text = str(exc).strip()
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__
