"""A task of the bridge that dies takes ``edge-agent ingest`` down loudly instead of leaving a zombie.

``python -m edge_agent ingest`` runs as a real process against real Mosquitto and InfluxDB 1.x.
The documented fault-injection seam (``EDGE_AGENT_INGEST_FAULT=parse``, see
``edge_agent.ingest.bridge``) makes the parse task raise on the first message; before, such a death
left a process that read nothing more, wrote nothing and logged nothing. Now the process logs at
CRITICAL with the traceback and exits with status 70, so systemd restarts it; the message was not
acked, so the next run (without the fault) writes it.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from edge_agent.core.origin import Origin
from edge_agent.ingest.bridge import EXIT_TASK_DIED, FAULT_ENV
from tests.helpers.ingest_bridge import Publisher, count_points, good
from tests.helpers.servers import InfluxDB1, Mosquitto, unique_name
from tests.helpers.waiting import wait_until, wait_until_sync

WAIT = 30.0


def write_config(path: Path, broker: Mosquitto, influx: InfluxDB1, database: str, prefix: str, client: str) -> Path:
    path.write_text(
        f"""
site: {{name: s, area: a, line: l}}
mqtt: {{host: {broker.host}, port: {broker.port}, topic_prefix: {prefix}}}
influxdb: {{version: 1, url: "{influx.url}", database: {database}}}
ingest: {{client_id: {client}, flush_interval: 200ms}}
machines: []
"""
    )
    return path


def start(config: Path, *, fault: bool) -> subprocess.Popen[str]:
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[3])}
    env.pop(FAULT_ENV, None)
    if fault:
        env[FAULT_ENV] = "parse"
    argv = [sys.executable, "-m", "edge_agent", "ingest", str(config)]
    return subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True, env=env)


async def test_a_dead_parse_task_exits_loudly_and_the_message_is_written_by_the_next_run(
    mosquitto: Mosquitto, influxdb1: InfluxDB1, publisher: Publisher, tmp_path: Path
) -> None:
    database, prefix, client = unique_name("db"), unique_name("edge"), unique_name("ingest")
    influxdb1.create_database(database)
    config = write_config(tmp_path / "plant.yaml", mosquitto, influxdb1, database, prefix, client)
    origin = Origin("s", "a", "l", "m1")
    process = start(config, fault=True)
    try:
        # Until the bridge is subscribed a QoS 1 message without a session is not kept: publish again until it dies.
        def died() -> bool:
            if process.poll() is not None:
                return True
            publisher.publish(origin.topic(prefix, "telemetry"), good(origin, 1))
            return False

        wait_until_sync(died, WAIT, "the bridge to exit after its parse task died", interval=0.5)
        _, stderr = process.communicate(timeout=WAIT)
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
    assert process.returncode == EXIT_TASK_DIED, stderr
    assert "CRITICAL" in stderr
    assert "ingest task 'ingest-parse' died: RuntimeError: fault injected" in stderr
    assert "Traceback (most recent call last)" in stderr
    assert await count_points(influxdb1, database) == 0

    process = start(config, fault=False)  # what systemd does; the session kept the unacked message
    try:
        await wait_until(lambda: _points_are(influxdb1, database, 2), WAIT, "the redelivered message to be written")
    finally:
        process.terminate()
        _, stderr = process.communicate(timeout=WAIT)
    assert process.returncode == 0, stderr


async def _points_are(influx: InfluxDB1, database: str, expected: int) -> bool:
    return await count_points(influx, database) == expected
