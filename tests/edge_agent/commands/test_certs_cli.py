"""`edge-agent certs`: list, show, trust, reject; fingerprints as people type them; nothing moved on bad input."""

from __future__ import annotations

import datetime
import hashlib
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from cryptography.x509.oid import NameOID

from connectors.opcua import pki as pki_module
from connectors.opcua.own_cert import own_certificate
from connectors.opcua.pki import TrustStore
from edge_agent.commands.cli import main

KEY = rsa.generate_private_key(public_exponent=65537, key_size=2048)


def certificate(name: str, uri: str, *, days: int = 365) -> bytes:
    """A self-signed server certificate (DER) with an ApplicationUri; one key for all (fast)."""
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)])
    now = datetime.datetime.now(datetime.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(subject)
        .public_key(KEY.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(days=1))
        .not_valid_after(now + datetime.timedelta(days=days))
        .add_extension(x509.SubjectAlternativeName([x509.UniformResourceIdentifier(uri)]), critical=False)
        .sign(KEY, hashes.SHA256())
    )
    return cert.public_bytes(serialization.Encoding.DER)


def certs(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    with pytest.raises(SystemExit) as exit_info:
        main(["certs", *argv])
    captured = capsys.readouterr()
    return int(exit_info.value.code or 0), captured.out, captured.err


def snapshot(root: Path) -> list[str]:
    return sorted(str(p.relative_to(root)) for p in root.rglob("*") if p.is_file())


@pytest.fixture
def store(tmp_path: Path) -> TrustStore:
    store = TrustStore(tmp_path / "pki")
    store.save(certificate("plc-7", "urn:siemens:plc-7"), "rejected")
    store.save(certificate("kepware", "urn:kepware:server"), "trusted")
    return store


def test_list_show_trust_reject_round_trip(store: TrustStore, capsys: pytest.CaptureFixture[str]) -> None:
    [plc] = store.entries(("rejected",))
    fp = plc.info.fingerprint
    code, out, _ = certs(capsys, "list", "--pki-dir", str(store.root))
    assert code == 0
    assert "rejected" in out
    assert "CN=plc-7" in out
    assert fp[:16] in out
    assert "urn:siemens:plc-7" in out
    assert "trusted" in out
    assert "CN=kepware" in out

    colons = ":".join(fp[i : i + 2] for i in range(0, 64, 2)).upper()
    code, out, err = certs(capsys, "trust", colons, "--pki-dir", str(store.root))
    assert code == 0, err
    assert f"trusted CN=plc-7 ({fp})" in out
    assert {e.info.subject: e.state for e in store.entries()} == {"CN=plc-7": "trusted", "CN=kepware": "trusted"}

    code, out, _ = certs(capsys, "show", fp[:8], "--pki-dir", str(store.root))
    assert code == 0
    for expected in (
        f"fingerprint     {fp}",
        "state           trusted",
        "subject         CN=plc-7",
        "issuer          CN=plc-7  (self-signed)",
        "ApplicationUri  urn:siemens:plc-7",
        "valid ",
    ):
        assert expected in out

    code, out, _ = certs(capsys, "reject", fp[:12].upper(), "--pki-dir", str(store.root))
    assert code == 0
    assert {e.info.subject: e.state for e in store.entries()} == {"CN=plc-7": "rejected", "CN=kepware": "trusted"}
    code, out, _ = certs(capsys, "reject", fp, "--pki-dir", str(store.root))
    assert code == 0
    assert "already rejected" in out


@pytest.mark.parametrize(
    ("fingerprint", "message"),
    [
        ("0000000000000000", "no certificate with fingerprint '0000000000000000'"),
        ("abc", "too short to name a certificate. Fix: give at least 8 hex digits"),
        ("not-a-fingerprint", "is not a SHA-256 fingerprint"),
    ],
)
def test_bad_fingerprints_are_one_line_errors_and_move_nothing(
    store: TrustStore, capsys: pytest.CaptureFixture[str], fingerprint: str, message: str
) -> None:
    before = snapshot(store.root)
    for command in ("trust", "reject", "show"):
        code, _out, err = certs(capsys, command, fingerprint, "--pki-dir", str(store.root))
        assert code == 2
        assert err.startswith("error: ")
        assert message in err
        assert len(err.strip().splitlines()) == 1
    assert snapshot(store.root) == before


def test_an_ambiguous_prefix_moves_nothing(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    store = TrustStore(tmp_path / "pki")
    for index in range(17):  # 17 fingerprints: two share their first hex digit
        store.save(certificate(f"server-{index}", f"urn:test:{index}"), "rejected")
    first_digits = [e.info.fingerprint[0] for e in store.entries()]
    shared = next(d for d in first_digits if first_digits.count(d) > 1)
    monkeypatch.setattr(pki_module, "MIN_PREFIX", 1)
    before = snapshot(store.root)
    code, _, err = certs(capsys, "trust", shared, "--pki-dir", str(store.root))
    assert code == 2
    assert "matches" in err
    assert "Fix: give more digits of the fingerprint" in err
    assert snapshot(store.root) == before


def test_the_agents_own_certificate_cannot_be_trusted_or_rejected(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    own = own_certificate(tmp_path / "pki")
    before = snapshot(tmp_path / "pki")
    code, _, err = certs(capsys, "reject", own.fingerprint, "--pki-dir", str(tmp_path / "pki"))
    assert code == 2
    assert "is the agent's own certificate" in err
    assert snapshot(tmp_path / "pki") == before
    code, out, _ = certs(capsys, "show", "--pki-dir", str(tmp_path / "pki"))
    assert code == 0
    assert "state           own" in out


def test_the_store_is_found_from_the_config(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    der = certificate("plc-9", "urn:plc-9")
    TrustStore(tmp_path / "line-a").save(der, "rejected")
    config = tmp_path / "plant.yaml"
    machine = """\
  - id: {id}
    type: opcua
    endpoint: opc.tcp://10.0.0.{n}:4840
    security: {security}
    tags: [{{name: a, node: "i=2258"}}]
"""
    config.write_text(
        "machines:\n"
        + machine.format(id="a", n=1, security=f"{{pki_dir: {tmp_path / 'line-a'}}}")
        + machine.format(id="b", n=2, security="none")
    )
    fp = hashlib.sha256(der).hexdigest()
    code, _out, err = certs(capsys, "trust", fp[:10], "--config", str(config))
    assert code == 0, err
    assert TrustStore(tmp_path / "line-a").state_of(der) == "trusted"
    code, _, err = certs(capsys, "list", "--config", str(config), "--pki-dir", str(tmp_path))
    assert code == 2
    assert "give one of them" in err
    config.write_text("machines:\n" + machine.format(id="b", n=2, security="none"))
    code, _, err = certs(capsys, "list", "--config", str(config))
    assert code == 2
    assert "no OPC UA machine with security on" in err


def test_expired_and_not_yet_valid_certificates_are_named() -> None:
    expired = pki_module.describe(certificate("old", "urn:old", days=1))  # valid from yesterday to tomorrow
    later = datetime.datetime.now(datetime.UTC) + datetime.timedelta(days=2)
    assert expired.validity_problem(later) is not None
    assert "expired on" in str(expired.validity_problem(later))
    earlier = datetime.datetime.now(datetime.UTC) - datetime.timedelta(days=3)
    assert "is not valid before" in str(expired.validity_problem(earlier))
    assert pki_module.describe(certificate("ok", "urn:ok")).validity_problem() is None
