"""The test servers themselves: ready on a loopback port, restart on the same port, clean stop.

Other test folders rely on these helpers, so their promises are checked here with real clients.
"""

from __future__ import annotations

import socket
from pathlib import Path

import paho.mqtt.client as mqtt
import pytest
from paho.mqtt.enums import CallbackAPIVersion

from tests.helpers.servers import (
    InfluxDB1,
    Mosquitto,
    ServerError,
    VictoriaMetrics,
    http_request,
    tcp_accepts,
    unique_name,
)


def test_mosquitto_restarts_on_the_same_port(fresh_mosquitto: Mosquitto) -> None:
    port = fresh_mosquitto.port
    assert tcp_accepts(port)
    fresh_mosquitto.stop()
    assert not fresh_mosquitto.running
    assert not tcp_accepts(port)
    fresh_mosquitto.start()
    assert fresh_mosquitto.port == port
    assert tcp_accepts(port)
    fresh_mosquitto.kill()
    assert not tcp_accepts(port)


def test_mosquitto_accepts_an_mqtt_client(mosquitto: Mosquitto) -> None:
    client = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=unique_name("probe"))
    try:
        assert client.connect(mosquitto.host, mosquitto.port, keepalive=5) == mqtt.MQTT_ERR_SUCCESS
        info = client.publish("probe/x", b"1", qos=0)
        assert info.rc == mqtt.MQTT_ERR_SUCCESS
    finally:
        client.disconnect()


def test_influxdb1_writes_and_queries(influxdb1: InfluxDB1) -> None:
    db = unique_name("db")
    influxdb1.create_database(db)
    status, body = http_request(
        f"{influxdb1.url}/write?db={db}&precision=ns", method="POST", data=b"m,k=v f=1.5 1763800000000000001"
    )
    assert status == 204, body
    assert influxdb1.query("SELECT * FROM m", db) == [{"time": 1763800000000000001, "k": "v", "f": 1.5}]
    with pytest.raises(ServerError, match=r"syntax|error"):
        influxdb1.query("SELEC nonsense", db)


def test_influxdb1_keeps_data_across_restart(fresh_influxdb1: InfluxDB1) -> None:
    port = fresh_influxdb1.port
    fresh_influxdb1.create_database("keep")
    status, _ = http_request(
        f"{fresh_influxdb1.url}/write?db=keep&precision=ns", method="POST", data=b"m f=2 1763800000000000000"
    )
    assert status == 204
    fresh_influxdb1.restart()
    assert fresh_influxdb1.port == port
    assert fresh_influxdb1.query("SELECT f FROM m", "keep") == [{"time": 1763800000000000000, "f": 2}]


def test_victoria_metrics_accepts_v2_line_protocol(victoria_metrics: VictoriaMetrics) -> None:
    machine = unique_name("m")
    status, body = http_request(
        f"{victoria_metrics.url}/api/v2/write?org=o&bucket=b&precision=ns",
        method="POST",
        data=f"telemetry,machine={machine} value=3.25 1763800000123000000".encode(),
    )
    assert status == 204, body
    series = victoria_metrics.export(f'telemetry_value{{machine="{machine}"}}')
    assert len(series) == 1
    assert series[0]["values"] == [3.25]
    assert series[0]["timestamps"] == [1763800000123]


def test_a_missing_binary_fails_with_the_package_to_install(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(Mosquitto, "binary", "no-such-mosquitto-binary")
    with pytest.raises(pytest.fail.Exception, match="apt-get install mosquitto"):
        Mosquitto()


def test_victoria_metrics_keeps_data_across_restart(fresh_victoria_metrics: VictoriaMetrics) -> None:
    port = fresh_victoria_metrics.port
    status, _ = http_request(
        f"{fresh_victoria_metrics.url}/api/v2/write?precision=ns",
        method="POST",
        data=b"telemetry,machine=r value=1.5 1763800000000000000",
    )
    assert status == 204
    fresh_victoria_metrics.flush()
    fresh_victoria_metrics.restart()
    assert fresh_victoria_metrics.port == port
    assert fresh_victoria_metrics.export('telemetry_value{machine="r"}')[0]["values"] == [1.5]


def test_a_taken_port_on_restart_fails_with_the_server_log(tmp_path: Path) -> None:
    broker = Mosquitto(tmp_path / "mosquitto", ready_timeout=1.0)
    try:
        broker.start()
        broker.stop()
        with socket.socket() as squatter:
            squatter.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            squatter.bind(("127.0.0.1", broker.port))
            squatter.listen()
            with pytest.raises(ServerError, match=r"(?i)address already in use"):
                broker.start()
        assert not broker.running
    finally:
        broker.close()
