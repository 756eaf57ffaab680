"""Before a session: pick the endpoint, decide whether to trust the server, set up certificates and login.

``secure(client, ...)`` runs before ``client.connect()``: it asks the server for its endpoints
(over a short-lived unsecured channel, which GetEndpoints always allows), picks one by the
configured policy and mode, checks the server's certificate against the trust store, loads or
makes the agent's own certificate and prepares the login. Every refusal is a ``ConnectError``
whose message says what was refused and how to fix it; the runtime retries with backoff, so a
certificate trusted meanwhile (``edge-agent certs trust …``) is used at the next attempt.

``SessionReport`` records what was found on the way (offered policies, the choice, the
certificate's trust state, the login), also when a step fails, for ``edge-agent doctor``.
"""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass, field
from pathlib import Path

from asyncua import ua
from asyncua.client.client import Client
from asyncua.ua.uaerrors import UaError
from cryptography import x509
from pydantic import SecretStr

from connectors.opcua.config import OpcUaSecurity
from connectors.opcua.own_cert import OwnCertificate, existing_own_certificate, load_pair, own_certificate
from connectors.opcua.pki import CertInfo, TrustStore, describe, first_certificate, pin_key
from connectors.opcua.security import (
    POLICY_CLASSES,
    Offer,
    choose_endpoint,
    offer_of,
    offered,
    token_names,
    user_token_types,
)
from edge_agent.core.errors import CertificateRefused, ConnectError, EndpointChoiceError, PkiError

_log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Login:
    """How the session logs in: anonymous, user name and password, or an X.509 user certificate."""

    username: str | None = None
    password: SecretStr | None = field(default=None, repr=False)
    user_certificate: str | None = None
    user_private_key: str | None = None

    def describe(self) -> str:
        """``as 'operator'``, ``with the user certificate …`` or ``anonymously`` (never the password)."""
        if self.username is not None:
            return f"as {self.username!r}"
        if self.user_certificate is not None:
            return f"with the user certificate {self.user_certificate}"
        return "anonymously"


@dataclass
class SessionReport:
    """What the handshake found, step by step (filled in as far as it got)."""

    pki_dir: Path | None = None
    offered: list[Offer] = field(default_factory=list)
    chosen: Offer | None = None
    server_certificate: CertInfo | None = None
    trust: str | None = None
    """``trusted``, ``trusted on first use``, ``unknown (trusted on first use by the agent)``, ``rejected``."""
    trust_fix: str | None = None
    login: str | None = None
    login_problem: str | None = None
    own: OwnCertificate | None = None


@dataclass(frozen=True)
class Target:
    """Where and how to connect: what the handshake needs from a machine config (or discover's options)."""

    label: str
    """Machine id for messages (``ConnectError`` names it)."""
    endpoint: str
    security: OpcUaSecurity
    login: Login
    timeout: float
    """Seconds for GetEndpoints."""


def trust_command(fp: str, store: TrustStore, verb: str = "trust") -> str:
    """The exact command that trusts (or rejects) a certificate in this store."""
    return f"edge-agent certs {verb} {fp} --pki-dir {store.root}"


async def secure(
    client: Client, target: Target, report: SessionReport, *, probe: bool = False, own: OwnCertificate | None = None
) -> None:
    """Choose the endpoint and set up security and login on ``client`` (before ``client.connect()``).

    ``probe=True`` (the doctor) never adds to ``trusted/`` nor makes the agent's certificate: a
    certificate the agent would trust on first use is used for this one session only, and a
    missing own certificate is replaced by a throw-away one. An unknown server certificate
    still goes to ``rejected/``, as the agent would put it there. ``own``: the agent's
    certificate as loaded before (``prepare_own``), else it is loaded now (in a thread).
    """
    allow_tofu = not probe
    endpoints = await _endpoints(target)
    report.offered = offered(endpoints)
    try:
        endpoint = choose_endpoint(endpoints, target.security)
    except EndpointChoiceError as exc:
        raise ConnectError(target.label, f"{target.endpoint}: {exc}") from exc
    report.chosen = offer_of(endpoint)
    if target.security.enabled:
        store = TrustStore(target.security.effective_pki_dir)
        report.pki_dir = store.root
        server_der = await _check_server(endpoint, target, store, report, allow_tofu)
        own = own or await _own(target, probe=probe)
        report.own = own
        client.application_uri = own.application_uri
        # What Client.set_security does, with the key loaded already: asyncua would parse and
        # check the RSA key again on the event loop at every connect (~0.2 s of CPU each).
        policy = POLICY_CLASSES[report.chosen.policy](
            x509.load_der_x509_certificate(server_der),
            x509.load_der_x509_certificate(own.cert_der),
            own.private_key,
            endpoint.SecurityMode,
        )
        # asyncua's attribute is typed after its default, SecurityPolicyNone
        client.security_policy = policy  # type: ignore[assignment]
        client.uaclient.set_security(policy)
    await _prepare_login(client, endpoint, target, report)


async def _endpoints(target: Target) -> list[ua.EndpointDescription]:
    probe = Client(target.endpoint, timeout=target.timeout)
    try:
        async with asyncio.timeout(target.timeout):
            return list(await probe.connect_and_get_server_endpoints())
    except TimeoutError as exc:
        raise ConnectError(
            target.label,
            f"no answer from {target.endpoint} within {target.timeout:g} s (GetEndpoints). "
            "Fix: check the endpoint and that the server is running",
        ) from exc
    except (OSError, EOFError, UaError) as exc:
        reason = f"{type(exc).__name__}: {exc}".rstrip(": ")
        raise ConnectError(
            target.label,
            f"cannot connect to {target.endpoint}: {reason}. Fix: check the endpoint and that the server is running",
        ) from exc
    finally:
        probe.disconnect_socket()


async def _check_server(
    endpoint: ua.EndpointDescription, target: Target, store: TrustStore, report: SessionReport, allow_tofu: bool
) -> bytes:
    """The server certificate of the chosen endpoint, if it is valid and trusted; else ``ConnectError``."""
    raw = endpoint.ServerCertificate or b""
    if not raw:
        raise ConnectError(
            target.label,
            f"{target.endpoint} offers {report.chosen} but sends no certificate for it. Fix: configure an "
            "application certificate on the server",
        )
    der = first_certificate(raw)
    try:
        info = describe(der)
    except PkiError as exc:
        raise ConnectError(target.label, f"the server's certificate cannot be read: {exc}") from exc
    report.server_certificate = info
    problem = info.validity_problem()
    if problem is not None:
        report.trust = "invalid"
        raise ConnectError(
            target.label,
            f"the server's certificate ({info.subject}, SHA-256 {info.fingerprint}) {problem}. Fix: renew the "
            "server's application certificate (and trust the new one), or correct the clock that is wrong",
        )
    verdict = await asyncio.to_thread(_decide, store, der, info, target, allow_tofu)
    report.trust = verdict
    if verdict == "trusted on first use":
        _log.warning(
            "machine %r: trusted the certificate of %s on first use (trust_on_first_use): %s, ApplicationUri %s, "
            "SHA-256 %s, stored in %s. Compare the fingerprint with the one the server shows; if it differs run: %s",
            target.label,
            target.endpoint,
            info.subject,
            info.application_uri,
            info.fingerprint,
            store.trusted_dir,
            trust_command(info.fingerprint, store, "reject"),
        )
    return der


def _decide(store: TrustStore, der: bytes, info: CertInfo, target: Target, allow_tofu: bool) -> str:
    """Trusted, trusted now on first use, or ``ConnectError`` (the certificate then waits in rejected/)."""
    state = store.state_of(der)
    if state == "trusted":
        return "trusted"
    key = pin_key(target.endpoint)
    pinned = store.pins().get(key)
    if target.security.trust_on_first_use and pinned is None:
        if not allow_tofu:
            return "unknown (the agent trusts it on first use)"
        store.save(der, "trusted")
        for entry in store.entries(("rejected",)):
            if entry.info.fingerprint == info.fingerprint:
                entry.path.unlink(missing_ok=True)
        store.pin(key, der)
        return "trusted on first use"
    try:
        store.save(der, "rejected")
    except OSError as exc:
        _log.debug("cannot store the rejected certificate in %s: %s", store.rejected_dir, exc)
    who = f"{info.subject}, ApplicationUri {info.application_uri or '(none)'}, SHA-256 {info.fingerprint}"
    fix = trust_command(info.fingerprint, store)
    if target.security.trust_on_first_use and pinned is not None and pinned != info.fingerprint:
        reason = (
            f"the server at {target.endpoint} presents a different certificate than the one trusted there on "
            f"first use (SHA-256 {pinned[:16]}…): {who}. This happens when the server's certificate was renewed, "
            "or when something else answers at that address"
        )
    elif state == "rejected":
        reason = f"the server's certificate is not trusted (it is in {store.rejected_dir}): {who}"
    else:
        reason = f"the server's certificate is unknown and was refused (saved in {store.rejected_dir}): {who}"
    raise CertificateRefused(
        target.label,
        f"{reason}. Fix: compare the fingerprint with the one the server shows, then run: {fix}",
        info.fingerprint,
    )


async def _own(target: Target, *, probe: bool = False) -> OwnCertificate:
    security = target.security
    load = existing_own_certificate if probe else own_certificate
    try:
        return await asyncio.to_thread(load, security.effective_pki_dir, security.certificate, security.private_key)
    except (PkiError, OSError) as exc:
        raise ConnectError(target.label, f"the agent's own certificate: {exc}") from exc


async def _prepare_login(
    client: Client, endpoint: ua.EndpointDescription, target: Target, report: SessionReport
) -> None:
    login = target.login
    accepted = user_token_types(endpoint)
    report.login = login.describe()
    if login.username is not None:
        wanted, key = ua.UserTokenType.UserName, "username and password"
    elif login.user_certificate is not None:
        wanted, key = ua.UserTokenType.Certificate, "user_certificate"
    else:
        wanted, key = ua.UserTokenType.Anonymous, ""
    if accepted and wanted not in accepted:
        if wanted is ua.UserTokenType.Anonymous:
            problem = (
                f"the server does not allow anonymous sessions on {report.chosen}; it accepts "
                f"{token_names(accepted)}. Fix: set username and password (or user_certificate and user_private_key)"
            )
        else:
            problem = (
                f"the server does not accept login by {key} on {report.chosen}; it accepts {token_names(accepted)}. "
                "Fix: use one of those"
            )
        report.login_problem = problem
        raise ConnectError(target.label, problem)
    if login.username is not None:
        client.set_user(login.username)
        if login.password is not None:
            client.set_password(login.password.get_secret_value())
            if password_in_clear(endpoint):
                _log.warning(
                    "machine %r: the password for %r crosses the network unencrypted: %s does not encrypt "
                    "the password and the channel is %s. Fix: use mode SignAndEncrypt",
                    target.label,
                    login.username,
                    target.endpoint,
                    report.chosen,
                )
    if login.user_certificate is not None and login.user_private_key is not None:
        fix = "check user_certificate and user_private_key"
        try:
            cert, key_obj = await asyncio.to_thread(load_pair, login.user_certificate, login.user_private_key, fix)
        except PkiError as exc:
            report.login_problem = str(exc)
            raise ConnectError(target.label, f"X.509 user login: {exc}") from exc
        client.user_certificate = cert
        client.user_private_key = key_obj
        report.login = f"with the user certificate {_subject(cert)}"


def password_in_clear(endpoint: ua.EndpointDescription) -> bool:
    """Whether a password sent on this endpoint is readable on the wire.

    The user name token policy may encrypt the password itself (its own policy, or the channel's
    when it names none); otherwise only a SignAndEncrypt channel protects it.
    """
    if endpoint.SecurityMode == ua.MessageSecurityMode.SignAndEncrypt:
        return False
    for policy in endpoint.UserIdentityTokens or []:
        if policy.TokenType == ua.UserTokenType.UserName:
            uri = policy.SecurityPolicyUri or endpoint.SecurityPolicyUri
            return not uri or uri.endswith("#None")
    return True


def _subject(cert: x509.Certificate) -> str:
    return cert.subject.rfc4514_string()


async def prepare_own(target: Target, *, probe: bool = False) -> OwnCertificate:
    """The agent's certificate, made on first use (in a thread: RSA key generation blocks)."""
    return await _own(target, probe=probe)
