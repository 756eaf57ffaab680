"""The agent's OPC UA trust store: its own application certificate and the server certificates it trusts.

Layout (a plain folder, so an operator or a test can manage it with ``cp`` and ``mv`` too)::

    <pki>/own/cert.der       the agent's application certificate (made on first use)
    <pki>/own/key.pem        its private key (mode 0600)
    <pki>/trusted/*.der      server certificates the agent accepts
    <pki>/rejected/*.der     server certificates seen and refused, waiting for a decision
    <pki>/pins.json          trust_on_first_use: which certificate was first seen at which endpoint

A certificate is identified by the SHA-256 fingerprint of its DER bytes; file names are only for
people. Every function here does blocking file I/O (and RSA key generation): call it through
``asyncio.to_thread`` from the event loop.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import json
import os
import re
import socket
import tempfile
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Literal

from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from cryptography.x509.oid import ExtendedKeyUsageOID

from edge_agent.core.errors import PkiError

CertState = Literal["trusted", "rejected", "own"]
OWN_CERT = "cert.der"
OWN_KEY = "key.pem"
OWN_CERT_DAYS = 5 * 365
"""Validity of the agent's own certificate: long enough not to break a plant every year, short
enough that an abandoned key does not stay valid forever (Kepware and Prosys use 1-3 years)."""

MIN_PREFIX = 8
_HEX = re.compile(r"^[0-9a-f]+$")
_lock = threading.Lock()


def state_directory() -> Path:
    """The agent's state folder: ``$STATE_DIRECTORY`` (systemd), else ``$XDG_STATE_HOME/edge-agent``.

    The same rule as the outbox's default location (``edge_agent.delivery.outbox.default_outbox_path``).
    """
    state = os.environ.get("STATE_DIRECTORY")
    if state:
        return Path(state.split(":")[0])
    return Path(os.environ.get("XDG_STATE_HOME") or Path.home() / ".local" / "state") / "edge-agent"


def default_pki_dir() -> Path:
    """``<state dir>/pki``, where the trust store lives unless ``security.pki_dir`` says otherwise."""
    return state_directory() / "pki"


def fingerprint(der: bytes) -> str:
    """The SHA-256 fingerprint of a DER certificate, 64 lowercase hex digits (what the CLI takes)."""
    return hashlib.sha256(der).hexdigest()


def with_colons(fp: str) -> str:
    """``AB:CD:…``, the form OPC UA tools and ``openssl x509 -fingerprint`` show."""
    return ":".join(fp[i : i + 2] for i in range(0, len(fp), 2)).upper()


def normalize_fingerprint(text: str) -> str:
    """A fingerprint or a prefix of one as typed (colons, spaces, any case) in canonical form.

    Raises ``PkiError`` when it is not hex or shorter than ``MIN_PREFIX`` digits.
    """
    cleaned = re.sub(r"[\s:]", "", text).lower()
    if not _HEX.match(cleaned) or len(cleaned) > 64:
        raise PkiError(
            f"{text!r} is not a SHA-256 fingerprint. Fix: copy it from the log or from 'edge-agent certs list' "
            "(64 hex digits, with or without colons)"
        )
    if len(cleaned) < MIN_PREFIX:
        raise PkiError(
            f"{text!r} is too short to name a certificate. "
            f"Fix: give at least {MIN_PREFIX} hex digits of the fingerprint"
        )
    return cleaned


def first_certificate(der: bytes) -> bytes:
    """The leading certificate of a DER blob that may hold a whole chain (some servers send one)."""
    if len(der) < 4 or der[0] != 0x30:
        return der
    if der[1] == 0x82:
        return der[: int.from_bytes(der[2:4], "big") + 4]
    if der[1] == 0x81:
        return der[: der[2] + 3]
    if der[1] < 0x80:
        return der[: der[1] + 2]
    return der


@dataclass(frozen=True)
class CertInfo:
    """What a person needs to recognise a certificate."""

    fingerprint: str
    subject: str
    issuer: str
    application_uri: str | None
    not_before: datetime
    not_after: datetime

    def validity_problem(self, now: datetime | None = None) -> str | None:
        """Why the certificate is not valid now (expired, not yet valid), or None."""
        now = now or datetime.now(UTC)
        if now < self.not_before:
            return f"is not valid before {self.not_before:%Y-%m-%d %H:%M} UTC (check both clocks)"
        if now > self.not_after:
            return f"expired on {self.not_after:%Y-%m-%d %H:%M} UTC"
        return None


def describe(der: bytes) -> CertInfo:
    """Parse a DER certificate; raises ``PkiError`` when it is not one."""
    try:
        cert = x509.load_der_x509_certificate(der)
    except ValueError as exc:
        raise PkiError(f"not a DER X.509 certificate ({exc})") from exc
    return CertInfo(
        fingerprint=fingerprint(der),
        subject=cert.subject.rfc4514_string(),
        issuer=cert.issuer.rfc4514_string(),
        application_uri=application_uri_of(cert),
        not_before=cert.not_valid_before_utc,
        not_after=cert.not_valid_after_utc,
    )


def application_uri_of(cert: x509.Certificate) -> str | None:
    """The ApplicationUri an OPC UA certificate carries as a URI in its SubjectAltName."""
    try:
        san = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName)
    except x509.ExtensionNotFound:
        return None
    uris = san.value.get_values_for_type(x509.UniformResourceIdentifier)
    return uris[0] if uris else None


@dataclass(frozen=True)
class StoredCert:
    """One certificate file of the store."""

    state: CertState
    path: Path
    info: CertInfo


def _write_atomically(path: Path, data: bytes, mode: int = 0o644) -> None:
    """Write to a temporary file in the same folder, then rename: readers never see half a file."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
    try:
        os.fchmod(fd, mode)
        with os.fdopen(fd, "wb") as handle:
            handle.write(data)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise


def _file_name(info: CertInfo) -> str:
    """``<common name>_<first 16 hex of the fingerprint>.der``: readable, and unique enough."""
    cn = info.subject.split("CN=", 1)[1].split(",", 1)[0] if "CN=" in info.subject else "certificate"
    slug = re.sub(r"[^A-Za-z0-9_.-]+", "-", cn).strip("-.")[:48] or "certificate"
    return f"{slug}_{info.fingerprint[:16]}.der"


class TrustStore:
    """The folders of one pki directory (see the module docstring)."""

    def __init__(self, root: Path | str) -> None:
        self.root = Path(root).expanduser()

    @property
    def trusted_dir(self) -> Path:
        """Server certificates the agent accepts."""
        return self.root / "trusted"

    @property
    def rejected_dir(self) -> Path:
        """Server certificates seen and refused."""
        return self.root / "rejected"

    @property
    def own_dir(self) -> Path:
        """The agent's own certificate and key."""
        return self.root / "own"

    def _files(self, state: CertState) -> list[Path]:
        folder = {"trusted": self.trusted_dir, "rejected": self.rejected_dir, "own": self.own_dir}[state]
        if not folder.is_dir():
            return []
        return sorted(p for p in folder.iterdir() if p.suffix.lower() == ".der" and p.is_file())

    def entries(self, states: tuple[CertState, ...] = ("trusted", "rejected", "own")) -> list[StoredCert]:
        """Every readable certificate file (files that do not parse are skipped)."""
        found = []
        for state in states:
            for path in self._files(state):
                try:
                    found.append(StoredCert(state, path, describe(path.read_bytes())))
                except (OSError, PkiError):
                    continue
        return found

    def state_of(self, der: bytes) -> CertState | None:
        """Whether this certificate is trusted or rejected (trusted wins), or None when unknown."""
        wanted = fingerprint(der)
        states = {e.state for e in self.entries(("trusted", "rejected")) if e.info.fingerprint == wanted}
        if "trusted" in states:
            return "trusted"
        return "rejected" if "rejected" in states else None

    def find(self, text: str, states: tuple[CertState, ...] = ("trusted", "rejected", "own")) -> list[StoredCert]:
        """The entries whose fingerprint starts with ``text`` (normalised; ``PkiError`` if malformed)."""
        prefix = normalize_fingerprint(text)
        return [e for e in self.entries(states) if e.info.fingerprint.startswith(prefix)]

    def find_one(self, text: str, states: tuple[CertState, ...] = ("trusted", "rejected", "own")) -> list[StoredCert]:
        """All files of exactly one certificate matching ``text``; ``PkiError`` when none or several."""
        matches = self.find(text, states)
        distinct = sorted({m.info.fingerprint for m in matches})
        if not distinct:
            where = " or ".join(f"{s}/" for s in states)
            raise PkiError(
                f"no certificate with fingerprint {text!r} in {where} of {self.root}. "
                "Fix: run 'edge-agent certs list' and copy the fingerprint from there"
            )
        if len(distinct) > 1:
            listed = ", ".join(d[:16] for d in distinct)
            raise PkiError(
                f"{text!r} matches {len(distinct)} certificates ({listed}…). Fix: give more digits of the fingerprint"
            )
        return matches

    def save(self, der: bytes, state: Literal["trusted", "rejected"]) -> Path:
        """Store a server certificate in ``trusted/`` or ``rejected/`` (no duplicate if already there)."""
        info = describe(der)
        for entry in self.entries((state,)):
            if entry.info.fingerprint == info.fingerprint:
                return entry.path
        folder = self.trusted_dir if state == "trusted" else self.rejected_dir
        path = folder / _file_name(info)
        _write_atomically(path, der)
        return path

    def move(self, text: str, to: Literal["trusted", "rejected"]) -> tuple[CertInfo, bool]:
        """Trust or reject the one certificate ``text`` names; returns it and whether anything changed.

        The file moves between ``rejected/`` and ``trusted/``; the agent's own certificate cannot be
        moved. ``PkiError`` (and nothing moved) for an unknown or ambiguous fingerprint.
        """
        source: CertState = "rejected" if to == "trusted" else "trusted"
        matches = self.find_one(text, ("trusted", "rejected", "own"))
        info = matches[0].info
        if all(m.state == "own" for m in matches):
            raise PkiError(
                f"{info.fingerprint[:16]}… is the agent's own certificate, not a server's. "
                "Fix: give the fingerprint of a server certificate (see 'edge-agent certs list')"
            )
        if not any(m.state == source for m in matches):
            return info, False
        with _lock:
            der = next(m for m in matches if m.state == source).path.read_bytes()
            self.save(der, to)
            for match in matches:
                if match.state == source:
                    match.path.unlink(missing_ok=True)
        return info, True

    # trust on first use ------------------------------------------------------------------

    @property
    def pins_file(self) -> Path:
        """Endpoint -> fingerprint of the certificate first trusted there on first use."""
        return self.root / "pins.json"

    def pins(self) -> dict[str, str]:
        """The recorded first-use pins (empty when none or unreadable)."""
        try:
            data = json.loads(self.pins_file.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            return {}
        return {str(k): str(v) for k, v in data.items()} if isinstance(data, dict) else {}

    def pin(self, endpoint: str, der: bytes) -> None:
        """Record that ``der`` was the certificate first seen at ``endpoint``."""
        with _lock:
            pins = self.pins()
            pins[endpoint] = fingerprint(der)
            _write_atomically(self.pins_file, (json.dumps(pins, indent=2, sort_keys=True) + "\n").encode())


def pin_key(endpoint: str) -> str:
    """The endpoint as pinned: scheme, host and port, lower case (the path does not change the server)."""
    rest = endpoint.split("://", 1)[-1]
    return "opc.tcp://" + rest.split("/", 1)[0].lower()


# the agent's own application certificate ---------------------------------------------------


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
    with _lock, _file_lock(store.root / ".own.lock"):
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
    _write_atomically(key_path, pem, 0o600)
    _write_atomically(cert_path, cert.public_bytes(serialization.Encoding.DER))


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
