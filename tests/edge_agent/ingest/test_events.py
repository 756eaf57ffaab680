"""Alert events and anomaly scores through the bridge: real Mosquitto → IngestBridge → real InfluxDB 1.x.

Events are shaped like the agent's (tests/helpers/alert_events.py) and published the way the agent
publishes them (QoS 1; alert events retained), then read back with InfluxQL as a Grafana
annotation query would.
"""

from __future__ import annotations

import asyncio
import json
from typing import Any

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion

from edge_agent.alerts.events import iso_to_ns
from edge_agent.core.origin import Origin
from edge_agent.core.samples import Batch, Sample
from edge_agent.delivery.config import InfluxConfig
from edge_agent.delivery.payloads import encode_json
from tests.helpers.alert_events import SINCE_S, alert_event, score_message
from tests.helpers.ingest_bridge import (
    WAIT,
    DeadLetters,
    Publisher,
    ingest_config,
    mqtt_config,
    running_bridge,
)
from tests.helpers.servers import InfluxDB1, Mosquitto, unique_name
from tests.helpers.waiting import wait_until

ORIGIN = Origin("plant", "hall 1", "line-2", "pump-1")


def publish_retained(broker: Mosquitto, topic: str, payload: bytes) -> None:
    client = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=unique_name("retain"))
    client.connect(broker.host, broker.port, keepalive=10)
    client.loop_start()
    try:
        info = client.publish(topic, payload, qos=1, retain=True)
        info.wait_for_publish(timeout=10)
        assert info.is_published()
    finally:
        client.disconnect()
        client.loop_stop()


def encode(message: dict[str, Any]) -> bytes:
    return json.dumps(message, allow_nan=False).encode()


async def query(influx: InfluxDB1, database: str, influxql: str) -> list[dict[str, Any]]:
    return await asyncio.to_thread(influx.query, influxql, database)


async def test_alert_events_and_scores_arrive_as_points(
    mosquitto: Mosquitto, influxdb1: InfluxDB1, publisher: Publisher
) -> None:
    database, prefix = unique_name("db"), unique_name("edge")
    influxdb1.create_database(database)
    alerts_topic, scores_topic = ORIGIN.topic(prefix, "alerts"), ORIGIN.topic(prefix, "scores")
    raised = alert_event("raised", SINCE_S + 120)
    # The agent retains the current alert state: a bridge started later still gets it.
    await asyncio.to_thread(publish_retained, mosquitto, alerts_topic, encode(raised))
    events = [
        alert_event("escalated", SINCE_S + 180, severity="critical"),
        alert_event("acknowledged", SINCE_S + 200, severity="critical", acknowledged=True, scored=False),
        alert_event("cleared", SINCE_S + 600, severity="critical", acknowledged=True),
    ]
    scores = [score_message(SINCE_S + 60 * i, 1.5 * i) for i in range(5)]
    influx = InfluxConfig(version=1, url=influxdb1.url, database=database, timeout=5.0)
    async with running_bridge(mqtt_config(mosquitto, prefix), ingest_config(), influx) as bridge:
        await wait_until(lambda: bridge.stats.acked == 1, WAIT, "the retained alert to be written")
        for event in events:
            await publisher.apublish(alerts_topic, encode(event))
        for score in scores:
            await publisher.apublish(scores_topic, encode(score))
        await publisher.apublish(  # telemetry still flows beside them
            ORIGIN.topic(prefix, "telemetry"),
            encode_json(Batch("pump-1", (Sample("flow", 1.0, iso_to_ns(raised["at"])),)), ORIGIN),
        )
        await wait_until(lambda: bridge.stats.acked == 10, WAIT, "every message to be acked")
        # Redelivered copies (the agent's outbox sends at least once) overwrite themselves.
        await publisher.apublish(alerts_topic, encode(events[0]))
        await publisher.apublish(scores_topic, encode(scores[3]))
        await wait_until(lambda: bridge.stats.acked == 12, WAIT, "the copies to be acked")
    assert bridge.stats.malformed == 0
    assert bridge.stats.received_by_kind == {"alerts": 5, "scores": 6, "telemetry": 1}

    rows = await query(
        influxdb1,
        database,
        'SELECT "event", severity, machine, area, alert_id, active, acknowledged, acknowledged_by, "level", '
        "peak_level, score, threshold, summary, hint, signals, model_version FROM alerts",
    )
    expected = []
    for event in [raised, *events]:
        expected.append(
            {
                "time": iso_to_ns(event["at"]),
                "event": event["event"],
                "severity": event["severity"],
                "machine": "pump-1",
                "area": "hall 1",
                "alert_id": event["alert_id"],
                "active": event["active"],
                "acknowledged": event["acknowledged"],
                "acknowledged_by": event["acknowledged_by"],
                "level": event["level"],
                "peak_level": event["peak_level"],
                "score": event["score"],
                "threshold": event["threshold"],
                "summary": event["summary"],
                "hint": f"{event['hint']['cause']}; {event['hint']['action']}",
                "signals": "vibration_rms up 63.1 %, motor_temperature up 30.4 %, flow normal 6.5 %",
                "model_version": event["model_version"],
            }
        )
    assert rows == expected
    # An annotation query: what happened to this machine and when, newest first.
    annotations = await query(
        influxdb1, database, "SELECT summary, \"event\" FROM alerts WHERE machine = 'pump-1' ORDER BY time DESC"
    )
    assert [r["event"] for r in annotations] == ["cleared", "acknowledged", "escalated", "raised"]

    points = await query(
        influxdb1,
        database,
        'SELECT score, threshold, "level", operating_state, model_version, detector FROM anomaly_score',
    )
    assert points == [
        {
            "time": iso_to_ns(s["at"]),
            "score": s["score"],
            "threshold": s["threshold"],
            "level": s["level"],
            "operating_state": "running",
            "model_version": s["model_version"],
            "detector": "pca",
        }
        for s in scores
    ]
    # The query docs/payloads.md shows for the anomaly level of a line.
    levels = await query(
        influxdb1, database, "SELECT max(\"level\") FROM anomaly_score WHERE line = 'line-2' GROUP BY machine"
    )
    assert [r["max"] for r in levels] == [max(s["level"] for s in scores)]


async def test_bad_events_are_dead_lettered_and_a_cleared_retained_alert_is_ignored(
    mosquitto: Mosquitto, influxdb1: InfluxDB1, publisher: Publisher
) -> None:
    database, prefix = unique_name("db"), unique_name("edge")
    influxdb1.create_database(database)
    alerts_topic, scores_topic = ORIGIN.topic(prefix, "alerts"), ORIGIN.topic(prefix, "scores")
    no_time = alert_event("raised", SINCE_S + 120)
    no_time["at"] = "yesterday"
    stringly = score_message(SINCE_S, 1.0)
    stringly["score"] = "1.0"
    listener = DeadLetters(mosquitto, prefix)
    influx = InfluxConfig(version=1, url=influxdb1.url, database=database, timeout=5.0)
    try:
        async with running_bridge(mqtt_config(mosquitto, prefix), ingest_config(), influx) as bridge:
            await publisher.apublish(alerts_topic, encode(no_time))
            await publisher.apublish(scores_topic, encode(stringly))
            await publisher.apublish(scores_topic, b"line,protocol=no f=1.0 1763800000000000000")  # JSON only here
            await publisher.apublish(alerts_topic, b"")  # what clearing the retained alert delivers
            await publisher.apublish(scores_topic, encode(score_message(SINCE_S, 2.0)))
            await wait_until(lambda: bridge.stats.acked == 5, WAIT, "every message to be acked")
            await wait_until(lambda: len(listener.received()) == 3, WAIT, "three dead letters")
        assert bridge.stats.ignored == 1
        assert bridge.stats.dead_lettered == 3
        letters = listener.received()
        assert [t for t, _ in letters] == [
            f"{prefix}/_deadletter/plant/hall 1/line-2/pump-1/alerts",
            f"{prefix}/_deadletter/plant/hall 1/line-2/pump-1/scores",
            f"{prefix}/_deadletter/plant/hall 1/line-2/pump-1/scores",
        ]
        reasons = [str(envelope["reason"]) for _, envelope in letters]
        assert "'at': 'yesterday' is not an ISO 8601 UTC time" in reasons[0]
        assert "'score' must be a number, got str" in reasons[1]
        assert "not valid JSON" in reasons[2]
        assert await query(influxdb1, database, "SELECT count(score) FROM anomaly_score") == [{"time": 0, "count": 1}]
        assert await query(influxdb1, database, "SELECT count(alert_id) FROM alerts") == []
    finally:
        listener.close()
