"""``edge-agent model train --influx``: a model learned from InfluxDB history, on a real InfluxDB 1.x.

Two simulated hours of a pump are written as the agent's ``telemetry`` points (docs/payloads.md),
together with what must not be learned: uncertain and bad readings, another machine, a counter.
The same rows go into a CSV. Both trainings must give the same model (same signals, same
thresholds), which shows that the reader kept exactly the good rows of the machine.
"""

from __future__ import annotations

import argparse
import csv
import math
import time
from pathlib import Path

import numpy as np
import pytest

from edge_agent.commands.model import register
from models.model import MachineModel
from simulators.dataset import Dataset
from tests.helpers.datasets import record
from tests.helpers.servers import InfluxDB1, http_request, unique_name

TAGS = "site=plant,area=hall,line=l1"


def run(*argv: str) -> int:
    parser = argparse.ArgumentParser()
    register(parser.add_subparsers(dest="command", required=True))
    args = parser.parse_args(list(argv))
    code: int = args.func(args)
    return code


def lines(d: Dataset, t0: int) -> list[str]:
    out: list[str] = []
    for i, t in enumerate(d.time_s):
        ns = int((t0 + t) * 1e9)
        head = f"telemetry,{TAGS},machine=pump-1"
        out += [
            f'{head},tag={s} quality="good",value={float(v)!r} {ns}'
            for s, v in zip(d.signals, d.values[i], strict=True)
        ]
        out.append(f'{head},tag=state_code quality="good",value={float(d.state[i])} {ns}')
        out.append(f'{head},tag=parts_count quality="good",value={float(i)} {ns}')
        out.append(f'telemetry,{TAGS},machine=pump-2,tag=flow quality="good",value=1e6 {ns}')
        if i % 50 == 7:  # not normal data: an uncertain reading 0.3 s later, a bad one without value
            later = ns + 300_000_000
            out.append(f'{head},tag={d.signals[0]} quality="uncertain",value=99999.0 {later}')
            out.append(f'{head},tag={d.signals[1]} quality="bad",reason="timeout" {later}')
    return out


@pytest.fixture(scope="module")
def history(influxdb1: InfluxDB1, tmp_path_factory: pytest.TempPathFactory) -> tuple[str, Path]:
    """A database with two hours of the pump ending a minute ago, and the same rows as CSV."""
    d = record("pump", 51, "2h", [])
    t0 = int(time.time()) - 2 * 3600 - 60
    db = unique_name("hist")
    influxdb1.create_database(db)
    body = lines(d, t0)
    for start in range(0, len(body), 20000):
        status, text = http_request(
            f"{influxdb1.url}/write?db={db}&precision=ns",
            method="POST",
            data="\n".join(body[start : start + 20000]).encode(),
        )
        assert status == 204, text
    path = tmp_path_factory.mktemp("hist") / "pump.csv"
    with path.open("w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["timestamp", *d.signals, "state"])
        for i, t in enumerate(d.time_s):
            w.writerow([t0 + t, *(repr(float(v)) for v in d.values[i]), int(d.state[i])])
    return db, path


def test_a_model_from_influxdb_equals_the_model_from_the_same_rows_as_csv(
    influxdb1: InfluxDB1, history: tuple[str, Path], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    db, csv_path = history
    from_influx, from_csv = tmp_path / "influx.npz", tmp_path / "csv.npz"
    assert run("model", "train", "--influx", influxdb1.url, "--database", db, "--machine", "pump-1",
               "--since", "3h", "--out", str(from_influx)) == 0  # fmt: skip
    out = capsys.readouterr().out
    assert "read 7200 rows of 5 signals" in out, out
    a = MachineModel.load(from_influx)
    assert a.signals == ["flow", "motor_current", "motor_temperature", "outlet_pressure", "vibration_rms"], (
        "every numeric tag of the machine but the state code and the counter"
    )
    assert run("model", "train", "--csv", str(csv_path), "--signals", *a.signals, "--out", str(from_csv)) == 0
    b = MachineModel.load(from_csv)
    assert sorted(a.states) == sorted(b.states) == ["running"]
    for state, sm in a.states.items():
        other = b.states[state]
        assert sm.n_windows == other.n_windows
        assert math.isclose(sm.threshold.value, other.threshold.value, rel_tol=1e-9)
        assert math.isfinite(sm.threshold.value)
        assert sm.threshold.value > sm.threshold.typical, "a threshold above the typical score"
    np.testing.assert_allclose(a.states["running"].scaler.center, b.states["running"].scaler.center)


@pytest.mark.parametrize(
    ("options", "says"),
    [
        (["--machine", "press-9"], "no good numeric telemetry"),
        (["--machine", "pump-1", "--signals", "flow", "torque"], "no good readings of ['torque']"),
        (["--machine", "pump-1", "--database", "nope"], "database not found"),
        (["--machine", "pump-1", "--since", "soon"], "--since"),
        (["--database", "x"], "needs --database and --machine"),
    ],
)
def test_bad_history_options_exit_2_and_write_nothing(
    influxdb1: InfluxDB1,
    history: tuple[str, Path],
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    options: list[str],
    says: str,
) -> None:
    out = tmp_path / "m.npz"
    argv = ["model", "train", "--influx", influxdb1.url, "--database", history[0], *options, "--out", str(out)]
    assert run(*argv) == 2
    assert says in capsys.readouterr().err
    assert not out.exists()


def test_an_unreachable_influxdb_is_named(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "m.npz"
    code = run(
        "model", "train", "--influx", "http://127.0.0.1:9", "--database", "d", "--machine", "m", "--out", str(out)
    )
    assert code == 2
    assert "cannot reach it" in capsys.readouterr().err
    assert not out.exists()


def test_credentials_come_from_the_environment(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    for name in ("INFLUX_TOKEN", "INFLUX_USERNAME", "INFLUX_PASSWORD"):
        monkeypatch.delenv(name, raising=False)
    with InfluxDB1(tmp_path / "influx", admin=("admin", "s3cret-pw")) as server:
        server.create_database("edge")
        argv = ("model", "train", "--influx", server.url, "--database", "edge", "--machine", "pump-1")
        assert run(*argv, "--out", str(tmp_path / "m.npz")) == 2
        refused = capsys.readouterr().err
        assert "not authorised" in refused
        assert "INFLUX_USERNAME" in refused, "the message says where credentials go"
        monkeypatch.setenv("INFLUX_USERNAME", "admin")
        monkeypatch.setenv("INFLUX_PASSWORD", "s3cret-pw")
        assert run(*argv, "--out", str(tmp_path / "m.npz")) == 2
        err = capsys.readouterr().err
        assert "no good numeric telemetry" in err, "logged in: the empty database is the problem now"
        assert "s3cret-pw" not in refused + err
