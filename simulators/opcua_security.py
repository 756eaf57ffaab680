"""OPC UA security for the simulator: a self-signed application certificate and password users.

The agent speaks Basic256Sha256 by default; the simulator must offer it so that is tested
against a real server. Keys and certificates are made in memory (no files to clean up or
leak), in a worker thread because RSA key generation takes a noticeable fraction of a second.
"""

from __future__ import annotations

import hashlib
import hmac
import ipaddress
import socket
from collections.abc import Mapping
from typing import Any, Literal

from asyncua.crypto.cert_gen import generate_private_key, generate_self_signed_app_certificate
from asyncua.crypto.permission_rules import User, UserRole
from asyncua.server.user_managers import UserManager
from cryptography import x509
from cryptography.hazmat.primitives.serialization import Encoding, NoEncryption, PrivateFormat
from cryptography.x509.oid import ExtendedKeyUsageOID

SecurityMode = Literal["None", "Basic256Sha256"]
SECURITY_MODES: tuple[SecurityMode, ...] = ("None", "Basic256Sha256")

CERTIFICATE_USER = "x509:"
"""A user whose "password" is ``x509:<SHA-256 of a DER certificate>`` logs in with that X.509
user certificate instead of a password (``opcua_users={"robot": "x509:3f9a…"}``)."""


def make_certificate(app_uri: str, host: str = "127.0.0.1", *, server: bool = True) -> tuple[bytes, bytes]:
    """A self-signed OPC UA application certificate: (certificate DER, private key DER PKCS#8).

    DER for both because asyncua reads raw bytes as DER (PEM only from ``.pem`` file names).

    ``server=False`` makes a client certificate (for tests that connect with Basic256Sha256).
    Blocking (RSA key generation): call it through ``asyncio.to_thread`` inside a loop.
    """
    key = generate_private_key()
    names = {"localhost", socket.gethostname()}
    alt_names: list[x509.GeneralName] = [x509.UniformResourceIdentifier(app_uri)]
    alt_names += [x509.DNSName(name) for name in sorted(names)]
    try:
        alt_names.append(x509.IPAddress(ipaddress.ip_address(host)))
    except ValueError:
        alt_names.append(x509.DNSName(host))
    usage = ExtendedKeyUsageOID.SERVER_AUTH if server else ExtendedKeyUsageOID.CLIENT_AUTH
    common_name = "edge-agent simulator" if server else "edge-agent simulator test client"
    certificate = generate_self_signed_app_certificate(key, common_name, {}, alt_names, [usage], days=30)
    return certificate.public_bytes(Encoding.DER), key.private_bytes(Encoding.DER, PrivateFormat.PKCS8, NoEncryption())


def identity_tokens(users: Mapping[str, str]) -> list[type]:
    """The login kinds a server with these users offers: user name, plus X.509 if a user has a certificate."""
    from asyncua import ua

    tokens: list[type] = [ua.UserNameIdentityToken]
    if any(secret.startswith(CERTIFICATE_USER) for secret in users.values()):
        tokens.append(ua.X509IdentityToken)
    return tokens


class PasswordUsers(UserManager):
    """asyncua user manager: only the configured user names with their passwords get in.

    Users configured as ``x509:<fingerprint>`` get in with that user certificate instead.
    Anonymous sessions are refused as well (the server offers no anonymous token).
    """

    def __init__(self, users: Mapping[str, str]) -> None:
        self._users = dict(users)

    def get_user(
        self, iserver: Any, username: str | None = None, password: str | None = None, certificate: Any = None
    ) -> User | None:
        """The user if the password (constant-time compare) or the certificate matches, else None."""
        del iserver
        # asyncua passes the client's application certificate along with a user name token too:
        # only a call without a user name is an X.509 user login.
        if username is None and certificate is not None:
            der = certificate if isinstance(certificate, bytes) else certificate.public_bytes(Encoding.DER)
            wanted = CERTIFICATE_USER + hashlib.sha256(der).hexdigest()
            for name, secret in self._users.items():
                if hmac.compare_digest(secret.encode("utf-8"), wanted.encode("utf-8")):
                    return User(role=UserRole.User, name=name)
            return None
        expected = self._users.get(username or "")
        if expected is None or password is None or expected.startswith(CERTIFICATE_USER):
            return None
        if not hmac.compare_digest(expected.encode("utf-8"), password.encode("utf-8")):
            return None
        return User(role=UserRole.User, name=username)
