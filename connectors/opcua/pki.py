"""The agent's OPC UA trust store: the server certificates it trusts, and where its own certificate lives.

Layout (a plain folder, so an operator or a test can manage it with ``cp`` and ``mv`` too)::

    <pki>/own/cert.der       the agent's application certificate (made on first use)
    <pki>/own/key.pem        its private key (mode 0600)
    <pki>/trusted/*.der      server certificates the agent accepts
    <pki>/rejected/*.der     server certificates seen and refused, waiting for a decision
    <pki>/pins.json          trust_on_first_use: which certificate was first seen at which endpoint

A certificate is identified by the SHA-256 fingerprint of its DER bytes; file names are only for
people. ``own_cert.py`` makes and loads the agent's own pair in ``<pki>/own/``. Every function here
does blocking file I/O: call it through ``asyncio.to_thread`` from the event loop.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import re
import tempfile
import threading
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Literal

from cryptography import x509

from edge_agent.core.errors import PkiError

CertState = Literal["trusted", "rejected", "own"]
OWN_CERT = "cert.der"
OWN_KEY = "key.pem"

MIN_PREFIX = 8
_HEX = re.compile(r"^[0-9a-f]+$")
STORE_LOCK = threading.Lock()
"""Held while a store folder changes, so two threads of one process never interleave there."""


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


def write_atomically(path: Path, data: bytes, mode: int = 0o644) -> None:
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
        write_atomically(path, der)
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
        with STORE_LOCK:
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
        with STORE_LOCK:
            pins = self.pins()
            pins[endpoint] = fingerprint(der)
            write_atomically(self.pins_file, (json.dumps(pins, indent=2, sort_keys=True) + "\n").encode())


def pin_key(endpoint: str) -> str:
    """The endpoint as pinned: scheme, host and port, lower case (the path does not change the server)."""
    rest = endpoint.split("://", 1)[-1]
    return "opc.tcp://" + rest.split("/", 1)[0].lower()
