"""Malformed payloads go to the dead-letter topic with their reason; everything around them arrives.

Real Mosquitto → IngestBridge → real InfluxDB 1.x. A second MQTT client listens on the
dead-letter topics, as a person investigating would. Good payloads are built with the agent's own
encoder; each bad one is a good one broken in one way.
"""

from __future__ import annotations

import base64
import json
import logging
from pathlib import Path

import pytest

from edge_agent.core.origin import Origin
from edge_agent.core.payload_json import MAX_PAYLOAD_BYTES
from edge_agent.core.problems import ProblemLog
from edge_agent.delivery.config import InfluxConfig
from edge_agent.ingest.deadletter import dead_letter_payload, dead_letter_prefix, dead_letter_topic
from tests.helpers.ingest_bridge import (
    T0,
    WAIT,
    DeadLetters,
    Publisher,
    count_points,
    good,
    ingest_config,
    mqtt_config,
    running_bridge,
)
from tests.helpers.servers import InfluxDB1, Mosquitto, unique_name
from tests.helpers.waiting import wait_until


def original_bytes(envelope: dict[str, object]) -> bytes:
    payload = envelope["payload"]
    assert isinstance(payload, str)
    if envelope["encoding"] == "base64":
        return base64.b64decode(payload)
    assert envelope["encoding"] == "utf-8"
    return payload.encode()


def bad_payloads(origin: Origin) -> dict[str, tuple[bytes, str]]:
    """name -> (payload, a part of the reason the dead letter must give)."""
    base = good(origin, 0)
    oversize = b"telemetry,machine=m f=1.0 " + str(T0).encode() + b"\n#" + b"x" * MAX_PAYLOAD_BYTES
    return {
        "not json": (b"{this is not json", "not valid JSON"),
        "unknown schema": (base.replace(b'"schema":1', b'"schema":7'), "unsupported schema 7"),
        "wrong type": (base.replace(b'"t":' + str(T0).encode(), b'"t":"yesterday"'), "samples[0]: 't' must be int"),
        "missing key": (base.replace(b'"machine":"m1",', b""), "missing key 'machine'"),
        "NaN": (base.replace(b'"v":0.0', b'"v":NaN'), "NaN is not allowed"),
        "not UTF-8 JSON": (base.replace(b'"flow"', b'"fl\xffow"'), "not valid JSON"),
        "not UTF-8 line protocol": (b"telemetry,machine=m\xfe f=1.0 " + str(T0).encode(), "not valid UTF-8"),
        "no timestamp": (b"telemetry,machine=m f=1.0", "no timestamp"),
        "oversize": (oversize, "exceeds the 4194304-byte limit"),
    }


@pytest.fixture
def database(influxdb1: InfluxDB1) -> str:
    name = unique_name("db")
    influxdb1.create_database(name)
    return name


async def test_each_malformed_payload_lands_on_the_dead_letter_topic_and_the_stream_goes_on(
    mosquitto: Mosquitto, influxdb1: InfluxDB1, database: str, publisher: Publisher, caplog: pytest.LogCaptureFixture
) -> None:
    prefix = unique_name("edge")
    origin = Origin("s", "a", "l", "m1")
    topic = origin.topic(prefix, "telemetry")
    bad = bad_payloads(origin)
    listener = DeadLetters(mosquitto, prefix)
    influx = InfluxConfig(version=1, url=influxdb1.url, database=database, timeout=5.0)
    cfg = ingest_config()
    try:
        with caplog.at_level(logging.WARNING, logger="edge_agent.ingest"):
            async with running_bridge(mqtt_config(mosquitto, prefix), cfg, influx) as bridge:
                index = 0
                for payload, _ in bad.values():
                    index += 1
                    await publisher.apublish(topic, good(origin, index))
                    await publisher.apublish(topic, payload)
                await publisher.apublish(topic, bad["not json"][0])  # the same problem again: counted, not logged
                await publisher.apublish(topic, good(origin, index + 1))
                total = 2 * len(bad) + 2
                await wait_until(lambda: bridge.stats.acked == total, 30, "every message to be acked")
                await wait_until(lambda: len(listener.received()) == len(bad) + 1, WAIT, "every dead letter")
            assert bridge.stats.malformed == len(bad) + 1
            assert bridge.stats.dead_lettered == len(bad) + 1
            assert bridge.stats.dead_letter_failed == 0
            assert bridge.stats.written_points == 2 * (len(bad) + 1)
        assert await count_points(influxdb1, database) == 2 * (len(bad) + 1)

        letters = listener.received()
        assert {t for t, _ in letters} == {f"{prefix}/_deadletter/s/a/l/m1/telemetry"}
        for (name, (payload, reason)), (_, envelope) in zip(bad.items(), letters, strict=False):
            assert envelope["topic"] == topic, name
            assert reason in str(envelope["reason"]), (name, envelope["reason"])
            assert envelope["bridge"] == cfg.client_id
            assert envelope["size"] == len(payload)
            if name == "oversize":
                assert envelope["truncated"] is True
                assert original_bytes(envelope) == payload[:MAX_PAYLOAD_BYTES]
            else:
                assert envelope["truncated"] is False
                assert original_bytes(envelope) == payload, name
        by_encoding = {name: envelope["encoding"] for name, (_, envelope) in zip(bad, letters, strict=False)}
        assert by_encoding["not UTF-8 JSON"] == by_encoding["not UTF-8 line protocol"] == "base64"
        assert by_encoding["not json"] == "utf-8"
        # One log line per kind of problem, not per message: "not json" came twice, was logged once.
        warnings = [r.getMessage() for r in caplog.records if "malformed payload" in r.getMessage()]
        assert len(warnings) == len(bad)
    finally:
        listener.close()


async def test_a_dead_lettered_message_is_not_redelivered_after_a_restart(
    mosquitto: Mosquitto, influxdb1: InfluxDB1, database: str, publisher: Publisher
) -> None:
    prefix = unique_name("edge")
    origin = Origin("s", "a", "l", "m2")
    topic = origin.topic(prefix, "telemetry")
    listener = DeadLetters(mosquitto, prefix)
    influx = InfluxConfig(version=1, url=influxdb1.url, database=database, timeout=5.0)
    cfg = ingest_config()  # the same client id, so the second bridge resumes the first one's session
    try:
        async with running_bridge(mqtt_config(mosquitto, prefix), cfg, influx) as first:
            await publisher.apublish(topic, b'{"schema": 1, "site": 5}')
            await publisher.apublish(topic, good(origin, 1))
            await wait_until(lambda: first.stats.acked == 2, WAIT, "both messages to be acked")
        # Published while no bridge runs: waits in the session, behind nothing.
        await publisher.apublish(topic, good(origin, 2))
        async with running_bridge(mqtt_config(mosquitto, prefix), cfg, influx) as second:
            await wait_until(lambda: second.stats.acked == 1, WAIT, "the message sent meanwhile to be acked")
            await publisher.apublish(topic, good(origin, 3))
            await wait_until(lambda: second.stats.acked == 2, WAIT, "a new message to be acked")
        assert second.stats.received == 2
        assert second.stats.malformed == 0
        assert len(listener.received()) == 1
        assert await count_points(influxdb1, database) == 6
    finally:
        listener.close()


async def test_a_broker_refusing_the_dead_letter_does_not_block_the_stream(
    influxdb1: InfluxDB1, database: str, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """An ACL that forbids the dead-letter topic: the loss is counted and logged at ERROR, the stream goes on."""
    prefix = unique_name("edge")
    acl = tmp_path / "acl"
    acl.write_text(f"topic readwrite {prefix}/+/+/+/+/+\n")  # anonymous clients: not {prefix}/_deadletter/...
    with Mosquitto(tmp_path / "broker", extra_config=f"acl_file {acl}") as broker:
        origin = Origin("s", "a", "l", "m3")
        topic = origin.topic(prefix, "telemetry")
        publisher = Publisher(broker)
        influx = InfluxConfig(version=1, url=influxdb1.url, database=database, timeout=5.0)
        try:
            with caplog.at_level(logging.ERROR, logger="edge_agent.ingest"):
                async with running_bridge(mqtt_config(broker, prefix), ingest_config(), influx) as bridge:
                    await publisher.apublish(topic, b"{broken")
                    await publisher.apublish(topic, good(origin, 1))
                    await publisher.apublish(topic, b"{broken again")
                    await publisher.apublish(topic, good(origin, 2))
                    await wait_until(lambda: bridge.stats.acked == 4, WAIT, "every message to be acked")
            assert bridge.stats.dead_letter_failed == 2
            assert bridge.stats.dead_lettered == 0
            assert await count_points(influxdb1, database) == 4
            errors = [r.getMessage() for r in caplog.records if r.levelno == logging.ERROR]
            assert len(errors) == 1
            assert "dead-letter topic" in errors[0]
            assert f"{prefix}/_deadletter/#" in errors[0]
        finally:
            publisher.close()


def test_dead_letter_topic_and_envelope() -> None:
    dl = dead_letter_prefix("edge/")
    assert dl == "edge/_deadletter"
    assert dead_letter_topic(dl, "edge", "edge/p/h/l/m/alerts") == "edge/_deadletter/p/h/l/m/alerts"
    assert dead_letter_topic("site/dlq", "edge", "other/x") == "site/dlq/other/x"
    with pytest.raises(ValueError, match="read its dead letters back"):
        dead_letter_prefix("edge", "edge/")
    with pytest.raises(ValueError, match="wildcards"):
        dead_letter_prefix("edge", "dlq/#")
    raw = b"\x00\xffabc"
    envelope = json.loads(
        dead_letter_payload(topic="t", payload=raw, reason="r", kind="k", received_at_ns=T0, bridge="b", max_bytes=4)
    )
    assert envelope["encoding"] == "base64"
    assert base64.b64decode(envelope["payload"]) == raw[:4]
    assert envelope["size"] == len(raw)
    assert envelope["truncated"] is True
    assert envelope["received_at"] == "2025-11-22T08:26:40.000Z"


def test_problem_log_logs_a_kind_once_per_interval(monkeypatch: pytest.MonkeyPatch) -> None:
    now = [100.0]
    monkeypatch.setattr("edge_agent.core.problems.time.monotonic", lambda: now[0])
    problems = ProblemLog(interval=60.0)
    assert problems.due("a") == 0
    assert problems.due("a") is None
    assert problems.due("b") == 0
    now[0] += 30
    assert problems.due("a") is None
    now[0] += 31
    assert problems.due("a") == 2  # two were only counted since the first line
    assert problems.due("a") is None
