"""The agent's own OPC UA application certificate: made on first use, loaded and checked once.

A secure channel needs the agent to present a certificate with an ApplicationUri. The agent makes
one in ``<pki>/own/`` the first time it needs it (or loads the pair the config names), under a
lock across processes so the agent and ``edge-agent doctor`` starting together make only one.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import socket
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from cryptography.x509.oid import ExtendedKeyUsageOID

from connectors.opcua.pki import (
    OWN_CERT,
    OWN_KEY,
    STORE_LOCK,
    TrustStore,
    application_uri_of,
    describe,
    fingerprint,
    write_atomically,
)
from edge_agent.core.errors import PkiError

OWN_CERT_DAYS = 5 * 365
"""Validity of the agent's own certificate: long enough not to break a plant every year, short
enough that an abandoned key does not stay valid forever (Kepware and Prosys use 1-3 years)."""


@dataclass(frozen=True)
class OwnCertificate:
    """The agent's application certificate as used for a secure channel."""

    cert_path: Path
    key_path: Path
    application_uri: str
    fingerprint: str
    cert_der: bytes = field(repr=False)
    private_key: rsa.RSAPrivateKey = field(repr=False)
    """Loaded once (loading checks the RSA key, a fifth of a second of CPU): never on the event loop."""
    ephemeral: bool = False
    """Made for one session only (``edge-agent doctor`` before the agent made its own)."""


def default_application_uri() -> str:
    """``urn:<hostname>:edge-agent``: unique per box, as the OPC UA spec asks of an ApplicationUri."""
    return f"urn:{socket.gethostname()}:edge-agent"


@contextlib.contextmanager
def _file_lock(path: Path) -> Iterator[None]:
    """An exclusive lock across processes (agent and doctor may start together on a fresh box)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "a+b") as handle:
        fcntl.flock(handle.fileno(), fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle.fileno(), fcntl.LOCK_UN)


def own_certificate(
    pki_dir: Path | str, certificate: str | None = None, private_key: str | None = None
) -> OwnCertificate:
    """The agent's certificate: the configured files, else ``<pki>/own/``, made there on first use.

    A made certificate has the ApplicationUri ``urn:<hostname>:edge-agent`` and the host name in
    its SubjectAltName, is valid for ``OWN_CERT_DAYS`` and allows client authentication; its key
    file is readable by the agent's user only. Blocking (RSA key generation).
    """
    if certificate is not None and private_key is not None:
        return _load_own(Path(certificate).expanduser(), Path(private_key).expanduser(), "security.certificate")
    store = TrustStore(pki_dir)
    cert_path, key_path = store.own_dir / OWN_CERT, store.own_dir / OWN_KEY
    with STORE_LOCK, _file_lock(store.root / ".own.lock"):
        if not (cert_path.exists() and key_path.exists()):
            _make_own(cert_path, key_path)
    return _load_own(cert_path, key_path, str(cert_path))


def existing_own_certificate(
    pki_dir: Path | str, certificate: str | None = None, private_key: str | None = None
) -> OwnCertificate:
    """The agent's certificate if it exists; else a throw-away one that is never written to ``pki_dir``.

    For checks run by another user (``sudo edge-agent doctor``): a key file they created would
    not be readable by the agent's user.
    """
    store = TrustStore(pki_dir)
    if certificate is not None or (store.own_dir / OWN_CERT).exists():
        return own_certificate(pki_dir, certificate, private_key)
    with tempfile.TemporaryDirectory(prefix="edge-agent-probe-") as scratch:
        made = own_certificate(scratch)
    return OwnCertificate(
        store.own_dir / OWN_CERT,
        store.own_dir / OWN_KEY,
        made.application_uri,
        made.fingerprint,
        made.cert_der,
        made.private_key,
        ephemeral=True,
    )


def _make_own(cert_path: Path, key_path: Path) -> None:
    cert_path.parent.mkdir(parents=True, exist_ok=True)
    os.chmod(cert_path.parent, 0o700)
    from asyncua.crypto.cert_gen import generate_self_signed_app_certificate

    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    host = socket.gethostname()
    names: list[x509.GeneralName] = [x509.UniformResourceIdentifier(default_application_uri()), x509.DNSName(host)]
    if host != "localhost":
        names.append(x509.DNSName("localhost"))
    cert = generate_self_signed_app_certificate(
        key, f"edge-agent@{host}", {}, names, [ExtendedKeyUsageOID.CLIENT_AUTH], days=OWN_CERT_DAYS
    )
    pem = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())
    write_atomically(key_path, pem, 0o600)
    write_atomically(cert_path, cert.public_bytes(serialization.Encoding.DER))


def _load_own(cert_path: Path, key_path: Path, where: str) -> OwnCertificate:
    cert, key = load_pair(cert_path, key_path, _regenerate(where))
    der = cert.public_bytes(serialization.Encoding.DER)
    uri = application_uri_of(cert)
    if uri is None:
        raise PkiError(
            f"{cert_path} has no ApplicationUri (a URI in its SubjectAltName), which OPC UA servers require. "
            f"Fix: {_regenerate(where)}"
        )
    problem = describe(der).validity_problem()
    if problem is not None:
        raise PkiError(f"the agent's certificate {cert_path} {problem}. Fix: {_regenerate(where)}")
    return OwnCertificate(cert_path, key_path, uri, fingerprint(der), der, key)


def load_pair(cert_file: Path | str, key_file: Path | str, fix: str) -> tuple[x509.Certificate, rsa.RSAPrivateKey]:
    """A certificate (DER or PEM) and its unencrypted RSA key (PEM or DER); ``PkiError`` with ``fix``."""
    cert_path, key_path = Path(cert_file).expanduser(), Path(key_file).expanduser()
    try:
        raw = cert_path.read_bytes()
        key_bytes = key_path.read_bytes()
    except OSError as exc:
        raise PkiError(f"cannot read {exc.filename}: {exc.strerror}. Fix: {fix}") from exc
    try:
        cert = x509.load_pem_x509_certificate(raw) if b"-----BEGIN" in raw else x509.load_der_x509_certificate(raw)
    except ValueError as exc:
        raise PkiError(f"{cert_path} is not an X.509 certificate (DER or PEM). Fix: {fix}") from exc
    try:
        key = (
            serialization.load_pem_private_key(key_bytes, None)
            if b"-----BEGIN" in key_bytes
            else serialization.load_der_private_key(key_bytes, None)
        )
    except (ValueError, TypeError) as exc:
        raise PkiError(f"{key_path} is not an unencrypted private key (PEM or DER). Fix: {fix}") from exc
    if not isinstance(key, rsa.RSAPrivateKey):
        raise PkiError(f"{key_path} is not an RSA key, which OPC UA security policies need. Fix: {fix}")
    if key.public_key().public_numbers() != cert.public_key().public_numbers():  # type: ignore[union-attr]
        raise PkiError(f"{key_path} is not the key of {cert_path}. Fix: {fix}")
    return cert, key


def _regenerate(where: str) -> str:
    if where.startswith("security."):
        return "point security.certificate and security.private_key at a valid pair, or remove both"
    return (
        f"delete the folder {Path(where).parent} and the agent makes a new certificate at the next connect "
        "(servers that trusted the old one must then trust the new one)"
    )
