"""``edge-agent doctor``: check every piece a config depends on and say how to fix what fails.

An operator runs it after editing the config or when data stops arriving. Each check is one
row: what was checked, pass/fail, what was found, and the fix. Nothing is written to a machine;
the broker gets one round-trip message on the agent's own doctor topic, and InfluxDB one point
in the measurement ``edge_agent_doctor`` (that is how write permission is proven).
"""

from __future__ import annotations

import asyncio
import contextlib
import ssl
import threading
import time
import uuid
from collections.abc import Sequence

import paho.mqtt.client as mqtt
from paho.mqtt.reasoncodes import ReasonCode

from connectors import PROTOCOLS, MachineConfig
from connectors.base import Connector
from connectors.diagnosis import Row
from edge_agent.core.errors import ConfigError, ConnectorError, SinkError
from edge_agent.core.samples import Quality
from edge_agent.delivery.config import InfluxConfig, MqttConfig
from edge_agent.delivery.mqtt_session import MqttSession
from edge_agent.runtime.config import AgentConfig
from edge_agent.runtime.poller import connect_limit

ROUND_TRIP_TIMEOUT = 10.0


async def check_machine(machine: MachineConfig) -> list[Row]:
    """Connect and read every tag once; a machine passes when it answers and every tag is good.

    Its protocol may add rows (an OPC UA machine's security: offered and chosen policy, the
    server certificate's trust state, the login) and makes the connector: one that changes
    nothing on disk the agent relies on (an OPC UA probe stores only an unknown server
    certificate, in rejected/, exactly as the agent would).
    """
    name = f"machine {machine.id} ({machine.type})"
    if not machine.enabled:
        return [Row(name, True, "disabled in the config; not checked")]
    connector = _connector(machine)
    timeout = max(machine.effective_timeout, 5.0)
    started = time.monotonic()
    connected = False
    try:
        await asyncio.wait_for(connector.connect(), timeout=connect_limit(machine))
        connected = True
        batch = await asyncio.wait_for(connector.read(), timeout=timeout)
    except (ConnectorError, TimeoutError) as exc:
        reason = str(exc) or "no answer within the timeout"
        extra = _extra_rows(machine, connector, connected, reason)
        if any(not row.ok for row in extra):  # a row below says what failed and how to fix it
            short = reason.removeprefix(f"machine {machine.id!r}: ").split(". Fix:", 1)[0]
            return [Row(name, False, f"{_first_sentence(short)} (see below)"), *extra]
        return [Row(name, False, reason, _machine_fix(machine, reason)), *extra]
    finally:
        await connector.close()
    elapsed_ms = (time.monotonic() - started) * 1000
    extra = _extra_rows(machine, connector, connected, None)
    bad = [s for s in batch.samples if s.quality is not Quality.GOOD]
    if bad:
        first = bad[0]
        return [
            Row(
                name,
                False,
                f"{len(bad)} of {len(batch.samples)} tag(s) not good, e.g. {first.tag}: "
                f"{first.reason or first.quality}",
                "check those tags' addresses / node ids and types against the device's documentation",
            ),
            *extra,
        ]
    return [Row(name, True, f"{len(batch.samples)} tag(s) read, all good, in {elapsed_ms:.0f} ms"), *extra]


def _connector(machine: MachineConfig) -> Connector:
    """The machine's connector as its protocol's doctor makes it (one that changes nothing on disk)."""
    return PROTOCOLS[machine.type].doctor.probe(machine)


def _extra_rows(machine: MachineConfig, connector: Connector, connected: bool, failure: str | None) -> list[Row]:
    """The protocol's own rows (OPC UA security) from what the connect attempt saw."""
    rows = PROTOCOLS[machine.type].doctor.rows(machine, connector, connected, failure)
    return list(rows)


def _first_sentence(text: str, limit: int = 100) -> str:
    """The start of a long message, for a summary row."""
    head = text.split(": ", 1)[0] if len(text) > limit else text
    return head if len(head) <= limit else head[: limit - 1] + "…"


def _machine_fix(machine: MachineConfig, reason: str) -> str:
    doctor = PROTOCOLS[machine.type].doctor
    own = doctor.fix(machine, reason)
    if own is not None:
        return own
    where = doctor.where(machine)
    lowered = reason.lower()
    if "refused" in lowered:
        return f"nothing listens at {where}: check host/port or endpoint, and that the device or simulator runs"
    if "no answer" in lowered or "timed out" in lowered or "timeout" in lowered:
        return f"{where} does not answer in time: check the network path and firewall, or raise timeout"
    return f"check the {machine.type} settings of machine {machine.id} ({where})"


def check_broker(config: MqttConfig, site: str) -> Row:
    """Connect (TLS and login as configured) and round-trip one message through the broker."""
    name = f"MQTT broker {config.host}:{config.port}"
    topic = f"{config.topic_prefix}/{site}/_agent/doctor/{uuid.uuid4().hex}"
    nonce = uuid.uuid4().bytes
    connected = threading.Event()
    received = threading.Event()
    refused: list[str] = []
    try:  # the agent's own session set-up: what passes here is what the agent will use
        session = MqttSession(config, f"edge-agent-doctor-{uuid.uuid4().hex[:8]}", persistent=False)
    except ConfigError as exc:  # a TLS file that cannot be loaded
        detail = "; ".join(problem.split(". Fix:", 1)[0] for problem in exc.problems)
        return Row(name, False, detail, "check mqtt.tls: ca_file, cert_file and key_file")
    client = session.client

    def on_connect(c: mqtt.Client, _u: object, _f: object, reason: ReasonCode, _p: object) -> None:
        if reason.is_failure:
            refused.append(str(reason))
        else:
            c.subscribe(topic, qos=1)
        connected.set()

    def on_subscribe(c: mqtt.Client, _u: object, _m: int, _r: object, _p: object) -> None:
        c.publish(topic, nonce, qos=1)

    def on_message(_c: mqtt.Client, _u: object, message: mqtt.MQTTMessage) -> None:
        if message.payload == nonce:
            received.set()

    client.on_connect = on_connect
    client.on_subscribe = on_subscribe
    client.on_message = on_message
    started = time.monotonic()
    try:
        session.connect()
    except ssl.SSLCertVerificationError as exc:
        return Row(name, False, f"TLS certificate not accepted: {exc.verify_message}", _tls_fix(exc.verify_message))
    except ssl.SSLError as exc:
        return Row(name, False, f"TLS handshake failed: {exc.reason}", "check tls.ca_file and that the port speaks TLS")
    except OSError as exc:
        return Row(
            name,
            False,
            f"cannot connect: {exc.strerror or exc}",
            "check mqtt.host and mqtt.port, and that the broker runs",
        )
    try:
        failure = _wait_round_trip(name, config, connected, received, refused)
    finally:
        with contextlib.suppress(Exception):
            session.stop_blocking()
    return failure or Row(
        name, True, f"connected and round-tripped a message in {(time.monotonic() - started) * 1000:.0f} ms"
    )


def _wait_round_trip(
    name: str, config: MqttConfig, connected: threading.Event, received: threading.Event, refused: list[str]
) -> Row | None:
    """The failed check, or None when the message came back."""
    if not connected.wait(ROUND_TRIP_TIMEOUT):
        return Row(name, False, "no CONNACK from the broker", "check that mqtt.port is an MQTT port")
    if refused:
        return Row(name, False, f"the broker refused the login: {refused[0]}", _auth_fix(refused[0]))
    if not received.wait(ROUND_TRIP_TIMEOUT):
        return Row(
            name,
            False,
            "connected, but a test message did not come back",
            f"allow this client to publish and subscribe under {config.topic_prefix}/# in the broker's ACL",
        )
    return None


def _tls_fix(message: str) -> str:
    if "hostname" in message.lower() or "ip address mismatch" in message.lower():
        return "connect with the host name in the broker's certificate, or set tls.insecure_skip_hostname_check"
    return "set tls.ca_file to the CA that signed the broker's certificate"


def _auth_fix(reason: str) -> str:
    if "not authorized" in reason.lower() or "bad user" in reason.lower():
        return "check mqtt.username and the password (set it as ${MQTT_PASSWORD}); the password is never shown"
    return "check the broker's log for why it refused this client"


async def check_influx(config: InfluxConfig) -> Row:
    """Ping InfluxDB and write one point, which proves the credentials and write permission."""
    from edge_agent.delivery.influx_writer import make_writer

    target = config.database if config.version == 1 else f"{config.org}/{config.bucket}"
    name = f"InfluxDB {config.version}.x {config.url} ({target})"
    writer = make_writer(config)
    try:
        await writer.ping()
        await writer.write([f"edge_agent_doctor check=1i {time.time_ns()}"])
    except SinkError as exc:
        return Row(name, False, str(exc), _influx_fix(str(exc), config))
    finally:
        await writer.close()
    return Row(name, True, "reachable, and a test point was written")


def _influx_fix(message: str, config: InfluxConfig) -> str:
    if "Fix:" in message:
        return message.split("Fix:", 1)[1].strip()
    if "unreachable" in message or "connect" in message.lower():
        return "check influxdb.url and that InfluxDB runs"
    if config.version == 1:
        return "check influxdb.database exists and the user may write to it"
    return "check influxdb.org, influxdb.bucket and that the token may write to the bucket"


async def run_checks(config: AgentConfig) -> list[Row]:
    """Every check the config implies, machines concurrently."""
    checks = [row for rows in await asyncio.gather(*(check_machine(m) for m in config.machines)) for row in rows]
    if config.mqtt is not None:
        checks.append(await asyncio.to_thread(check_broker, config.mqtt, config.site.name))
    else:
        checks.append(Row("MQTT broker", True, "not configured: the agent will only poll"))
    if config.influxdb is not None:
        checks.append(await check_influx(config.influxdb))
    return checks


def render(checks: Sequence[Row]) -> str:
    """The table an operator reads."""
    width = max(len(c.name) for c in checks)
    lines = []
    for check in checks:
        mark = "PASS" if check.ok else "FAIL"
        lines.append(f"{mark}  {check.name:<{width}}  {check.detail}")
        if not check.ok and check.fix:
            lines.append(f"      {'':<{width}}  fix: {check.fix}")
    failed = sum(1 for c in checks if not c.ok)
    lines.append(f"\n{len(checks) - failed} passed, {failed} failed")
    return "\n".join(lines)
