"""What ``edge-agent doctor`` checks of an OPC UA machine beyond "connects and reads": its security.

Rows from one connect attempt: the policies the server offers, the one chosen, the trust state
of the server's certificate (with the exact ``edge-agent certs trust …`` command when it is not
trusted) and the login. The rows are pure: they read the ``SessionReport`` the attempt filled in.
The attempt itself uses a probe connector, which stores nothing but a refused certificate in
rejected/ (no trust on first use, no key of its own), so running the doctor changes nothing the
agent relies on.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from connectors.diagnosis import Row
from connectors.opcua.config import OpcUaMachine
from connectors.opcua.handshake import SessionReport, trust_command
from connectors.opcua.pki import TrustStore
from connectors.opcua.security import list_offers

if TYPE_CHECKING:
    from connectors.base import Connector


class OpcUaDoctor:
    """The OPC UA part of the doctor (``connectors.diagnosis.MachineDoctor``)."""

    def probe(self, machine: OpcUaMachine) -> Connector:
        """A connector in probe mode: it never trusts on first use and makes no key."""
        from connectors.opcua.client import OpcUaConnector

        return OpcUaConnector(machine, probe=True)

    def rows(self, machine: OpcUaMachine, connector: Connector, connected: bool, failure: str | None) -> list[Row]:
        """The security rows, from the report the connect attempt filled in."""
        report = getattr(connector, "report", None)
        if not isinstance(report, SessionReport):
            return []
        return security_rows(machine, report, connected, failure)

    def fix(self, machine: OpcUaMachine, reason: str) -> str | None:
        """The connector's messages carry their own fix."""
        return reason.split("Fix:", 1)[1].strip() if "Fix:" in reason else None

    def where(self, machine: OpcUaMachine) -> str:
        """The endpoint URL."""
        return machine.endpoint


def security_rows(machine: OpcUaMachine, report: SessionReport, connected: bool, failure: str | None) -> list[Row]:
    """The rows for what the attempt got to see (none when the server could not be reached at all)."""
    prefix = f"machine {machine.id}:"
    if not report.offered:
        return []
    rows = [Row(f"{prefix} offered security", True, list_offers(report.offered))]
    if report.chosen is None:
        fix = failure.split("Fix:", 1)[1].strip() if failure and "Fix:" in failure else ""
        rows.append(Row(f"{prefix} chosen security", False, "no offered endpoint fits the config", fix))
        return rows
    wanted = "none (as configured)" if not machine.security.enabled else f"policy {machine.security.policy}"
    rows.append(Row(f"{prefix} chosen security", True, f"{report.chosen} ({wanted})"))
    info = report.server_certificate
    if machine.security.enabled and info is not None:
        who = f"{info.subject}, SHA-256 {info.fingerprint}"
        trust = report.trust or "refused"
        store = TrustStore(report.pki_dir or machine.security.effective_pki_dir)
        if trust in {"trusted", "trusted on first use"} or trust.startswith("unknown (the agent trusts"):
            rows.append(Row(f"{prefix} server certificate", True, f"{trust}: {who}"))
        elif trust == "invalid":
            rows.append(
                Row(f"{prefix} server certificate", False, f"not valid now: {who}", "renew the server's certificate")
            )
        else:
            rows.append(
                Row(
                    f"{prefix} server certificate",
                    False,
                    f"not trusted (in {store.rejected_dir}): {who}",
                    f"compare the fingerprint with the server's, then run: {trust_command(info.fingerprint, store)}",
                )
            )
    if report.login_problem is not None:
        rows.append(
            Row(f"{prefix} login", False, report.login_problem.split(". Fix:", 1)[0], _fix(report.login_problem))
        )
    elif connected and report.login is not None:
        rows.append(Row(f"{prefix} login", True, f"logged in {report.login}"))
    own = report.own
    if own is not None and own.ephemeral:
        rows.append(
            Row(
                f"{prefix} agent certificate",
                True,
                f"not made yet; the agent makes it at its first connect in {own.cert_path.parent}",
            )
        )
    return rows


def _fix(message: str) -> str:
    return message.split("Fix:", 1)[1].strip() if "Fix:" in message else ""
