"""Acknowledge an alert over MQTT: the command payload, its checks, and the reply.

A maintenance app (or Node-RED, or ``mosquitto_pub``) publishes

    topic   {prefix}/{site}/{area}/{line}/{machine}/alerts/ack
    payload {"alert_id": "pump-1-3-1767622411", "by": "ana"}      (optional: "machine", "request_id")

and the agent answers on ``.../alerts/ack/reply`` (QoS 1, not retained) with
``{"schema": 1, "ok": true|false, "machine", "alert_id", "by", "request_id", "error", "at"}``.
On success the ``acknowledged`` alert event follows on ``.../alerts`` (retained), exactly as when
the status page's button is pressed: both go through ``AlertSink.acknowledge_alert``.

The command topic is one level below ``.../alerts``, so a subscriber to ``+/+/+/+/alerts``
(the ingest bridge, a dashboard) never sees commands. Who may publish there is the broker's
business: limit write access to it in the broker's ACL (deploy/mosquitto/acl.example).

Anyone who can publish there can send anything: invalid UTF-8, JSON nested thousands of levels
deep, thousands of junk commands a second. Every one of them gets a refusal that says what to
send (a ``CommandError``, never another exception), and the log gets one line per kind of
refusal per minute with the count of the others (``RefusalLog``), so a flood cannot bury it.

The checks are pure (bytes in, request or ``CommandError`` out), so they are tested without a
broker; ``edge_agent.runtime.agent`` wires them to the publisher's subscription.
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from edge_agent.core.errors import CommandError
from edge_agent.core.origin import Origin
from edge_agent.core.problems import ProblemLog, problem_kind

log = logging.getLogger(__name__)

ACK_KIND = "alerts/ack"
REPLY_KIND = "alerts/ack/reply"
REPLY_SCHEMA = 1
MAX_PAYLOAD = 4096
MAX_NAME = 100


@dataclass(frozen=True, slots=True)
class AckRequest:
    """A checked acknowledge command."""

    alert_id: str
    by: str
    request_id: str | None = None


_EXAMPLE = 'send JSON like {"alert_id": "<id from the alert event>", "by": "<your name>"}'


def parse_ack(payload: bytes, origin: Origin) -> AckRequest:
    """Check one command payload sent to ``origin``'s ack topic; ``CommandError`` says what is wrong."""
    if len(payload) > MAX_PAYLOAD:
        raise CommandError(f"payload of {len(payload)} bytes is too large (at most {MAX_PAYLOAD}); {_EXAMPLE}")
    data = _load(payload)
    if not isinstance(data, dict):
        raise CommandError(f"payload is JSON but not an object; {_EXAMPLE}")
    request_id = data.get("request_id")
    if request_id is not None and not isinstance(request_id, str | int):
        raise CommandError("request_id must be a string or a number, or left out")
    rid = None if request_id is None else str(request_id)[:MAX_NAME]
    machine = data.get("machine")
    if machine is not None and machine != origin.machine:
        raise CommandError(
            f"payload names machine {machine!r} but was sent to the command topic of {origin.machine!r}; "
            f"send it to the topic of {machine!r}, or leave machine out"
        )
    alert_id = data.get("alert_id")
    if not isinstance(alert_id, str) or not alert_id.strip():
        raise CommandError(f"alert_id is missing or not a string; {_EXAMPLE}")
    by = data.get("by")
    if not isinstance(by, str) or not by.strip():
        raise CommandError(f"by (who acknowledges) is missing or empty; {_EXAMPLE}")
    if len(by) > MAX_NAME or not by.isprintable():
        raise CommandError(f"by must be a printable name of at most {MAX_NAME} characters")
    return AckRequest(alert_id.strip(), by.strip(), rid)


def _load(payload: bytes) -> Any:
    """The JSON in a command; ``CommandError`` for anything else, however malformed or deeply nested."""
    try:
        return json.loads(payload)
    except RecursionError:
        raise CommandError(f"payload is nested too deeply to be a command; {_EXAMPLE}") from None
    except ValueError as exc:  # JSONDecodeError, UnicodeDecodeError, an integer of over 4300 digits
        reason = str(exc)[:200]
        raise CommandError(f"payload is not JSON ({reason}); {_EXAMPLE}") from None


def request_id_of(payload: bytes) -> str | None:
    """The request_id of a payload, if it has a usable one, so even a refusal can be matched to its request."""
    try:
        data = _load(payload) if len(payload) <= MAX_PAYLOAD else None
    except CommandError:
        return None
    rid = data.get("request_id") if isinstance(data, dict) else None
    return str(rid)[:MAX_NAME] if isinstance(rid, str | int) else None


def reply(
    origin: Origin,
    *,
    ok: bool,
    request: AckRequest | None = None,
    error: str | None = None,
    request_id: str | None = None,
) -> bytes:
    """The reply payload (schema 1) for ``.../alerts/ack/reply``."""
    body = {
        "schema": REPLY_SCHEMA,
        "ok": ok,
        "machine": origin.machine,
        "alert_id": request.alert_id if request else None,
        "by": request.by if request else None,
        "request_id": request.request_id if request else request_id,
        "error": error,
        "at": datetime.now(UTC).isoformat(timespec="seconds").replace("+00:00", "Z"),
    }
    return json.dumps(body).encode()


class RefusalLog:
    """Logs refused commands: each kind of refusal once, then at most once a minute with a count.

    Every command is still answered; only the log is throttled (``edge_agent.core.problems``).
    """

    def __init__(self, interval: float = 60.0) -> None:
        self._problems = ProblemLog(interval)

    def refused(self, machine: str, problem: str, by: str | None = None) -> None:
        """One refused command for ``machine``; ``by`` when the command named who sent it."""
        skipped = self._problems.due(problem_kind(problem))
        if skipped is None:
            return
        who = f" from {by!r}" if by is not None else ""
        more = f" ({skipped} more refusal(s) like it since the last line)" if skipped else ""
        log.warning("alerts: acknowledge command%s for %s refused: %s%s", who, machine, problem, more)
