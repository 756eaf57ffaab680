"""TLS towards a real Mosquitto: one clear message per kind of certificate problem, retries go on.

The publisher, the ingest bridge and ``edge-agent doctor`` share one session set-up
(``edge_agent.delivery.mqtt_session``); each is checked against the same TLS broker here.

Certificates are made for the test with the ``openssl`` command line: a CA, a broker certificate
for the name ``broker.example`` only, and a second CA that signed nothing of the broker's.
"""

from __future__ import annotations

import asyncio
import logging
import shutil
from pathlib import Path

import pytest

from edge_agent.commands.doctor import check_broker
from edge_agent.delivery.config import InfluxConfig, MqttConfig, OutboxConfig, TlsConfig
from edge_agent.delivery.influx_writer import make_writer
from edge_agent.delivery.publisher import MqttPublisher
from edge_agent.ingest.bridge import IngestBridge
from edge_agent.ingest.config import IngestConfig
from tests.helpers.servers import Mosquitto, free_port, tcp_accepts, unique_name
from tests.helpers.waiting import wait_until

# paho 2.2 does not close the socket of a connection attempt whose TLS handshake failed; the garbage
# collector does (with a ResourceWarning). That is paho's leak, bounded by the retry rate, not ours.
pytestmark = pytest.mark.filterwarnings(
    r"ignore:Exception ignored in. <ssl.SSLSocket:pytest.PytestUnraisableExceptionWarning"
)


class TlsMosquitto(Mosquitto):
    """Mosquitto with TLS on its only listener; ready once it accepts TCP (the probe speaks plain MQTT)."""

    def _is_ready(self) -> bool:
        return tcp_accepts(self.port)


async def openssl(*args: str) -> None:
    process = await asyncio.create_subprocess_exec(
        "openssl", *args, stdout=asyncio.subprocess.DEVNULL, stderr=asyncio.subprocess.PIPE
    )
    _, err = await process.communicate()
    assert process.returncode == 0, err.decode()


async def make_certificates(directory: Path) -> None:
    key = ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes"]
    for ca in ("ca", "other-ca"):
        await openssl(
            "req",
            "-x509",
            *key,
            "-keyout",
            f"{directory}/{ca}.key",
            "-out",
            f"{directory}/{ca}.pem",
            "-days",
            "2",
            "-subj",
            f"/CN={ca}",
        )
    await openssl(
        "req",
        *key,
        "-keyout",
        f"{directory}/server.key",
        "-out",
        f"{directory}/server.csr",
        "-subj",
        "/CN=broker.example",
    )
    (directory / "san.ext").write_text("subjectAltName=DNS:broker.example\n")
    await openssl(
        "x509",
        "-req",
        "-in",
        f"{directory}/server.csr",
        "-CA",
        f"{directory}/ca.pem",
        "-CAkey",
        f"{directory}/ca.key",
        "-CAcreateserial",
        "-out",
        f"{directory}/server.pem",
        "-days",
        "2",
        "-extfile",
        f"{directory}/san.ext",
    )


@pytest.fixture
async def tls_broker(tmp_path: Path) -> TlsMosquitto:
    if shutil.which("openssl") is None:
        pytest.fail("openssl is needed to make test certificates. Fix: apt-get install openssl", pytrace=False)
    await make_certificates(tmp_path)
    extra = f"certfile {tmp_path}/server.pem\nkeyfile {tmp_path}/server.key\ncafile {tmp_path}/ca.pem"
    broker = TlsMosquitto(tmp_path / "broker", extra_config=extra)
    await asyncio.to_thread(broker.start)
    return broker


@pytest.mark.parametrize(
    ("ca", "skip_hostname", "expected"),
    [
        ("other-ca.pem", False, "certificate is not trusted"),
        ("ca.pem", False, "not valid for the name '127.0.0.1'"),
    ],
)
async def test_certificate_problems_are_named_once_and_retries_continue(
    tls_broker: TlsMosquitto,
    tmp_path: Path,
    caplog: pytest.LogCaptureFixture,
    ca: str,
    skip_hostname: bool,
    expected: str,
) -> None:
    caplog.set_level(logging.INFO)
    try:
        config = MqttConfig(
            host="127.0.0.1",
            port=tls_broker.port,
            tls=TlsConfig(ca_file=str(tmp_path / ca), insecure_skip_hostname_check=skip_hostname),
        )
        pub = MqttPublisher(config, "s", client_id=unique_name("agent"), outbox=OutboxConfig(path=str(tmp_path / "o")))
        pub.backoff.initial, pub.backoff.cap = 0.1, 0.2
        await pub.start()
        try:
            await wait_until(lambda: pub.backoff.attempts >= 3, 20, "several attempts")
            assert pub.stats.connects == 0
        finally:
            await pub.close()
    finally:
        await asyncio.to_thread(tls_broker.close)
    problems = [r.getMessage() for r in caplog.records if r.levelno >= logging.WARNING]
    assert len(problems) == 1, problems
    assert expected in problems[0]
    assert "Fix:" in problems[0]


async def test_trusted_certificate_connects(tls_broker: TlsMosquitto, tmp_path: Path) -> None:
    try:
        config = MqttConfig(
            host="127.0.0.1",
            port=tls_broker.port,
            tls=TlsConfig(ca_file=str(tmp_path / "ca.pem"), insecure_skip_hostname_check=True),
        )
        pub = MqttPublisher(config, "s", client_id=unique_name("agent"), outbox=OutboxConfig(path=str(tmp_path / "o")))
        await pub.start()
        try:
            await wait_until(lambda: pub.connected, 15, "TLS connection")
        finally:
            await pub.close()
    finally:
        await asyncio.to_thread(tls_broker.close)


async def test_the_bridge_subscribes_over_tls(tls_broker: TlsMosquitto, tmp_path: Path) -> None:
    """The bridge's MQTT 5 session over TLS; no InfluxDB is needed to see the subscription confirmed."""
    config = MqttConfig(
        host="127.0.0.1",
        port=tls_broker.port,
        tls=TlsConfig(ca_file=str(tmp_path / "ca.pem"), insecure_skip_hostname_check=True),
    )
    writer = make_writer(InfluxConfig(version=1, url=f"http://127.0.0.1:{free_port()}", database="unused"))
    bridge = IngestBridge(config, IngestConfig(client_id=unique_name("bridge")), writer)
    stop = asyncio.Event()
    run = asyncio.create_task(bridge.run(stop), name="test:bridge")
    try:
        async with asyncio.timeout(15):
            await bridge.wait_ready()
        assert bridge.stats.connected
    finally:
        stop.set()
        async with asyncio.timeout(10):
            await run
        await writer.close()
        await asyncio.to_thread(tls_broker.close)


async def test_the_doctor_checks_tls_as_the_agent_connects(tls_broker: TlsMosquitto, tmp_path: Path) -> None:
    def tls(ca: Path, skip_hostname: bool = True) -> MqttConfig:
        settings = TlsConfig(ca_file=str(ca), insecure_skip_hostname_check=skip_hostname)
        return MqttConfig(host="127.0.0.1", port=tls_broker.port, topic_prefix=unique_name("doc"), tls=settings)

    try:
        good = await asyncio.to_thread(check_broker, tls(tmp_path / "ca.pem"), "s")
        untrusted = await asyncio.to_thread(check_broker, tls(tmp_path / "other-ca.pem"), "s")
        wrong_name = await asyncio.to_thread(check_broker, tls(tmp_path / "ca.pem", skip_hostname=False), "s")
        missing = await asyncio.to_thread(check_broker, tls(tmp_path / "no-such-ca.pem"), "s")
    finally:
        await asyncio.to_thread(tls_broker.close)
    assert good.ok, good
    assert not untrusted.ok
    assert "TLS certificate not accepted" in untrusted.detail
    assert "tls.ca_file" in untrusted.fix
    assert not wrong_name.ok
    assert "host name" in wrong_name.fix
    assert not missing.ok
    assert "cannot load the certificates" in missing.detail
