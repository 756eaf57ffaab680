"""TLS towards a real Mosquitto: one clear message per kind of certificate problem, retries go on.

Certificates are made for the test with the ``openssl`` command line: a CA, a broker certificate
for the name ``broker.example`` only, and a second CA that signed nothing of the broker's.
"""

from __future__ import annotations

import asyncio
import logging
import shutil
from pathlib import Path

import pytest

from edge_agent.delivery.config import MqttConfig, OutboxConfig, TlsConfig
from edge_agent.delivery.publisher import MqttPublisher
from tests.helpers.servers import Mosquitto, tcp_accepts, unique_name
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
