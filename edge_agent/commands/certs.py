"""``edge-agent certs``: look at and decide on the OPC UA server certificates the agent has met.

An unknown server certificate is refused and saved in ``<pki>/rejected/``, and the log names
its fingerprint. After comparing that fingerprint with the one the server shows, the operator
runs ``edge-agent certs trust <fingerprint>``; a running agent uses it at its next connect
attempt, without a restart. ``reject`` undoes a trust, ``list`` and ``show`` look.

The trust store is found from ``--pki-dir DIR``, else from ``--config FILE`` (every
``security.pki_dir`` of its OPC UA machines, default ``$STATE_DIRECTORY/pki``), else the default.
Exit codes: 0 done, 2 bad input (unknown or ambiguous fingerprint, unreadable config): then
nothing was moved.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from connectors.opcua.pki import StoredCert, TrustStore, default_pki_dir, with_colons
from edge_agent.core.errors import ConfigError, PkiError

EPILOG = """\
examples:
  edge-agent certs list                               every certificate and its state
  edge-agent certs show 3f9a0c1e                      details of one (a unique prefix is enough)
  edge-agent certs trust 3F:9A:0C:1E:...              accept a server certificate from rejected/
  edge-agent certs reject 3f9a0c1e                    stop trusting it (moved to rejected/)
  edge-agent certs list --config /etc/edge-agent/config.yaml    the trust store(s) that config uses

The store is a folder: <pki>/trusted/*.der, <pki>/rejected/*.der, <pki>/own/ (the agent's own
certificate). Copying a server's DER certificate into trusted/ trusts it too.
"""


class CertsError(Exception):
    """A problem to report in one line (exit code 2)."""


def stores(args: argparse.Namespace) -> list[TrustStore]:
    """The trust store(s) the options name."""
    if args.pki_dir:
        return [TrustStore(args.pki_dir)]
    if args.config:
        from edge_agent.runtime.loader import load_config

        try:
            config = load_config(args.config)
        except ConfigError as exc:
            raise CertsError(str(exc)) from None
        folders: list[Path] = []
        for machine in config.machines:
            security = getattr(machine, "security", None)
            if machine.type == "opcua" and security is not None and security.enabled:
                folder = security.effective_pki_dir
                if folder not in folders:
                    folders.append(folder)
        if not folders:
            raise CertsError(
                f"{args.config} has no OPC UA machine with security on, so it uses no trust store. "
                "Fix: give --pki-dir DIR, or check the file"
            )
        return [TrustStore(folder) for folder in folders]
    return [TrustStore(default_pki_dir())]


def _rows(entries: Sequence[StoredCert]) -> list[list[str]]:
    return [
        [
            e.state,
            e.info.fingerprint[:16],
            e.info.subject,
            e.info.application_uri or "",
            f"{e.info.not_after:%Y-%m-%d}" + (" EXPIRED" if e.info.validity_problem() else ""),
        ]
        for e in entries
    ]


def _table(rows: list[list[str]], header: list[str]) -> str:
    widths = [max(len(r[i]) for r in [header, *rows]) for i in range(len(header))]
    lines = ["  ".join(cell.ljust(w) for cell, w in zip(row, widths, strict=True)).rstrip() for row in [header, *rows]]
    return "\n".join(lines)


def cmd_list(args: argparse.Namespace) -> int:
    """Every certificate of the store(s), one line each."""
    for store in stores(args):
        entries = store.entries()
        print(f"{store.root}:")
        if not entries:
            print("  (empty: no server certificate seen yet, and no own certificate made yet)")
            continue
        table = _table(_rows(entries), ["state", "fingerprint", "subject", "ApplicationUri", "valid until"])
        print("\n".join(f"  {line}" for line in table.splitlines()))
    print("\nFingerprints are SHA-256 (first 16 hex digits shown; 8 or more name a certificate).")
    return 0


def _detail(entry: StoredCert) -> str:
    info = entry.info
    problem = info.validity_problem()
    return "\n".join(
        [
            f"fingerprint     {info.fingerprint}",
            f"                {with_colons(info.fingerprint)}",
            f"state           {entry.state}",
            f"subject         {info.subject}",
            f"issuer          {info.issuer}" + ("  (self-signed)" if info.issuer == info.subject else ""),
            f"ApplicationUri  {info.application_uri or '(none)'}",
            f"valid           {info.not_before:%Y-%m-%d %H:%M} to {info.not_after:%Y-%m-%d %H:%M} UTC"
            + (f"  (it {problem})" if problem else ""),
            f"file            {entry.path}",
        ]
    )


def cmd_show(args: argparse.Namespace) -> int:
    """Details of one certificate, or of all."""
    found: list[StoredCert] = []
    for store in stores(args):
        found += store.find_one(args.fingerprint) if args.fingerprint else store.entries()
    if not found and not args.fingerprint:
        print("no certificates yet")
    print("\n\n".join(_detail(e) for e in found))
    return 0


def _find_everywhere(args: argparse.Namespace) -> list[TrustStore]:
    """The stores holding the certificate ``args.fingerprint`` names; ``CertsError`` if none or ambiguous."""
    everywhere = stores(args)
    holding: list[TrustStore] = []
    fingerprints: set[str] = set()
    problems: list[str] = []
    for store in everywhere:
        try:
            matches = store.find_one(args.fingerprint)
        except PkiError as exc:
            problems.append(str(exc))
            continue
        holding.append(store)
        fingerprints.add(matches[0].info.fingerprint)
    if len(fingerprints) > 1:
        raise CertsError(
            f"{args.fingerprint!r} names different certificates in different stores. Fix: give more digits"
        )
    if not holding:
        raise CertsError(problems[0] if len(problems) == 1 else "; ".join(problems))
    return holding


def _move(args: argparse.Namespace, to: Any) -> int:
    holding = _find_everywhere(args)
    for store in holding:  # every check passed: now move
        info, changed = store.move(args.fingerprint, to)
        where = store.trusted_dir if to == "trusted" else store.rejected_dir
        if not changed:
            print(f"{info.subject} ({info.fingerprint[:16]}…) is already {to} in {store.root}; nothing to do")
        elif to == "trusted":
            print(
                f"trusted {info.subject} ({info.fingerprint}), moved to {where}. A running agent uses it at its "
                "next connect attempt; no restart needed"
            )
        else:
            print(
                f"rejected {info.subject} ({info.fingerprint}), moved to {where}. A running agent refuses it at its "
                "next connect (an open session goes on until it ends)"
            )
    return 0


def cmd_trust(args: argparse.Namespace) -> int:
    """Move a certificate from rejected/ to trusted/."""
    return _move(args, "trusted")


def cmd_reject(args: argparse.Namespace) -> int:
    """Move a certificate from trusted/ to rejected/."""
    return _move(args, "rejected")


def cmd_certs(args: argparse.Namespace) -> int:
    """Run a ``certs`` subcommand; every expected failure is one line on stderr and exit code 2."""
    if args.pki_dir and args.config:
        print("error: --pki-dir and --config both name a trust store. Fix: give one of them", file=sys.stderr)
        return 2
    try:
        result: int = args.certs_func(args)
    except (CertsError, PkiError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except OSError as exc:
        print(
            f"error: {exc.filename or ''}: {exc.strerror}. Fix: check the folder and its permissions", file=sys.stderr
        )
        return 2
    return result


def register(subparsers: Any) -> None:
    """Add ``certs`` to the CLI's subcommands."""
    parser = subparsers.add_parser(
        "certs",
        help="OPC UA certificates: list, show, trust or reject server certificates",
        description="Manage the agent's OPC UA trust store (see connectors/opcua/README.md).",
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    where = argparse.ArgumentParser(add_help=False)
    where.add_argument("--config", metavar="FILE", help="use the trust store(s) of this agent config")
    where.add_argument("--pki-dir", metavar="DIR", help="use this trust store folder (default: $STATE_DIRECTORY/pki)")
    sub = parser.add_subparsers(dest="certs_command", required=True)
    listing = sub.add_parser("list", parents=[where], help="every certificate with its state")
    listing.set_defaults(certs_func=cmd_list)
    show = sub.add_parser("show", parents=[where], help="subject, issuer, ApplicationUri, validity, state")
    show.add_argument("fingerprint", nargs="?", help="SHA-256 fingerprint or a unique prefix (8+ hex digits)")
    show.set_defaults(certs_func=cmd_show)
    for name, func, text in (
        ("trust", cmd_trust, "trust a server certificate (rejected/ -> trusted/)"),
        ("reject", cmd_reject, "stop trusting a server certificate (trusted/ -> rejected/)"),
    ):
        command = sub.add_parser(name, parents=[where], help=text)
        command.add_argument("fingerprint", help="SHA-256 fingerprint (with or without colons) or a unique prefix")
        command.set_defaults(certs_func=func)
    parser.set_defaults(func=cmd_certs)
