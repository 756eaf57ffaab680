"""Hostile input through the real bridge: each message is dead-lettered with its reason or written exactly right.

Real Mosquitto → IngestBridge → real InfluxDB 1.x, with a second MQTT client on the dead-letter
topics. The corpus (``hostile_corpus``: deep nesting, lone surrogates, huge numbers, injection
characters in every identifier, forged identities, NaN and infinities, payloads over 4 MiB, broken
JSON, wrong types, line-protocol injections, alert events and scores) goes out one case after
another, each followed by a good message of another machine: every good message must arrive,
so one hostile message never stops the stream, and nothing but the expected points is stored.
"""

from __future__ import annotations

import asyncio
from collections import defaultdict
from typing import Any

from edge_agent.delivery.config import InfluxConfig
from tests.edge_agent.ingest.hostile_corpus import LINE, SITE, Case, corpus, good_json, good_rows, origin
from tests.helpers.ingest_bridge import DeadLetters, Publisher, ingest_config, mqtt_config, running_bridge
from tests.helpers.servers import InfluxDB1, Mosquitto, unique_name
from tests.helpers.waiting import wait_until

WAIT = 90.0  # a few hundred messages, several of 4 MiB, on a loaded machine


def points(rows: list[dict[str, Any]]) -> list[tuple[str, object, object]]:
    return sorted((str(row["tag"]), row["value"], row["value_str"]) for row in rows)


async def test_every_hostile_message_is_dead_lettered_or_written_exactly_and_the_stream_goes_on(
    mosquitto: Mosquitto, influxdb1: InfluxDB1, publisher: Publisher
) -> None:
    database, prefix = unique_name("db"), unique_name("edge")
    influxdb1.create_database(database)
    cases: dict[str, Case] = {f"c{index:02d}": build(f"c{index:02d}") for index, build in enumerate(corpus())}
    assert len(cases) >= 60
    dead = {machine: case for machine, case in cases.items() if case.reason is not None}
    listener = DeadLetters(mosquitto, prefix)
    influx = InfluxConfig(version=1, url=influxdb1.url, database=database, timeout=10.0)
    try:
        async with running_bridge(mqtt_config(mosquitto, prefix), ingest_config(), influx) as bridge:
            for index, (machine, case) in enumerate(cases.items()):
                await publisher.apublish(origin(machine, case.area).topic(prefix, case.kind), case.payload)
                good_machine = f"g{index:02d}"
                await publisher.apublish(origin(good_machine).topic(prefix, "telemetry"), good_json(good_machine))
            await wait_until(
                lambda: bridge.stats.acked == 2 * len(cases),
                WAIT,
                "every message to be acked",
                detail=lambda: bridge.stats,
            )
            await wait_until(
                lambda: len(listener.received()) >= bridge.stats.dead_lettered,
                WAIT,
                "every dead letter to arrive",
                detail=lambda: (bridge.stats, sorted(topic.split("/")[-2] for topic, _ in listener.received())),
            )
        letters = listener.received()
    finally:
        listener.close()

    problems: list[str] = []
    by_topic: dict[str, list[dict[str, object]]] = defaultdict(list)
    for topic, envelope in letters:
        by_topic[topic].append(envelope)
    for machine, case in dead.items():
        topic = f"{prefix}/_deadletter/{SITE}/{case.area}/{LINE}/{machine}/{case.kind}"
        found = by_topic.pop(topic, [])
        if len(found) != 1:
            problems.append(f"{case.name}: {len(found)} dead letters, expected 1")
        elif str(case.reason) not in str(found[0]["reason"]):
            problems.append(f"{case.name}: reason {found[0]['reason']!r} lacks {case.reason!r}")
    problems += [f"unexpected dead letter on {topic}: {found[0]['reason']}" for topic, found in by_topic.items()]

    rows = await asyncio.to_thread(influxdb1.query, "SELECT * FROM telemetry", database)
    stored: dict[str, list[dict[str, Any]]] = defaultdict(list)
    for row in rows:
        stored[str(row["machine"])].append(row)
    for machine, case in cases.items():
        held = stored.pop(machine, [])
        expected = [] if case.reason is not None else case.rows
        if points(held) != points(expected):
            problems.append(f"{case.name}: stored {points(held)}, expected {points(expected)}")
        if any(row["area"] != case.area or row["site"] != SITE or row["line"] != LINE for row in held):
            problems.append(f"{case.name}: stored with another identity: {held}")
    for index in range(len(cases)):
        held = stored.pop(f"g{index:02d}", [])
        if points(held) != points(good_rows()):
            problems.append(f"good message {index}: stored {points(held)}")
    problems += [f"points of an unexpected machine {machine!r}: {held}" for machine, held in stored.items()]
    measurements = await asyncio.to_thread(influxdb1.query, "SHOW MEASUREMENTS", database)
    if [row["name"] for row in measurements] != ["telemetry"]:
        problems.append(f"measurements written: {measurements}")
    assert not problems, "\n".join(problems)
    assert bridge.stats.malformed == len(dead)
    assert bridge.stats.rejected == 0
    assert bridge.stats.dead_lettered == len(dead)
