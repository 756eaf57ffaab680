"""``model train`` / ``model evaluate`` on CSVs recorded by the simulators; bad input exits 2, writes nothing."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import pytest

from edge_agent.commands.model import register
from simulators.record import record
from simulators.scenario import parse_scenario

HEALTHY = "seed: 41\nstep: 1s\nmachines: [pump-1]\n"
FAULTY = """seed: 42
step: 1s
machines: [pump-1]
faults:
  - {machine: pump-1, fault: imbalance, at: 2h, duration: 1h, severity: 0.8}
"""


def run(*argv: str) -> int:
    parser = argparse.ArgumentParser()
    register(parser.add_subparsers(dest="command", required=True))
    args = parser.parse_args(list(argv))
    code: int = args.func(args)
    return code


@pytest.fixture(scope="module")
def csvs(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    folder = tmp_path_factory.mktemp("csv")
    record(parse_scenario(HEALTHY), 6 * 3600, folder / "healthy.csv")
    record(parse_scenario(FAULTY), 4 * 3600, folder / "faulty.csv")
    return folder / "healthy.csv", folder / "faulty.csv"


@pytest.fixture(scope="module")
def model(csvs: tuple[Path, Path], tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("model") / "pump.npz"
    assert run("model", "train", "--csv", str(csvs[0]), "--out", str(out)) == 0
    return out


def test_train_and_evaluate(
    csvs: tuple[Path, Path], model: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    report, predictions = tmp_path / "r.json", tmp_path / "p.csv"
    code = run(
        "model", "evaluate", "--model", str(model), "--test", str(csvs[1]), "--time-column", "timestamp",
        "--label-column", "anomaly", "--report", str(report), "--predictions", str(predictions),
    )  # fmt: skip
    assert code == 0
    out = capsys.readouterr().out
    assert "event-wise: 1/1 episodes detected" in out
    result = json.loads(report.read_text())["overall"]
    assert result["event_recall"] == 1.0
    assert result["false_alerts"] == 0
    assert result["precision"] > 0.9
    for key in (
        "recall",
        "f1",
        "false_alarm_rate",
        "missed_alarm_rate",
        "mean_detection_delay_s",
        "false_alerts_per_day",
    ):
        assert key in result
    assert len(predictions.read_text().splitlines()) == 4 * 3600 + 1


def test_evaluate_trains_on_the_first_rows_and_micro_averages(csvs: tuple[Path, Path], tmp_path: Path) -> None:
    report = tmp_path / "r.json"
    code = run(
        "model", "evaluate", "--train", str(csvs[0]), "--train-rows", "18000", "--test", str(csvs[1]), str(csvs[1]),
        "--time-column", "timestamp", "--label-column", "anomaly", "--report", str(report), "--detector", "robust",
    )  # fmt: skip
    assert code == 0
    data = json.loads(report.read_text())
    assert data["overall"]["episodes"] == 2
    assert data["model"]["detector"] == "robust"


def edit(source: Path, target: Path, change: str) -> Path:
    lines = source.read_text().splitlines()
    header = lines[0].split(",")
    if change == "short":
        lines = lines[:200]
    elif change == "constant":
        i = header.index("flow")
        lines = [lines[0]] + [",".join(c if j != i else "1.0" for j, c in enumerate(r.split(","))) for r in lines[1:]]
    elif change == "nan":
        row = lines[5000].split(",")
        row[header.index("flow")] = "nan"
        lines[5000] = ",".join(row)
    elif change == "order":
        lines[3000], lines[3001] = lines[3001], lines[3000]
    elif change == "label":
        row = lines[100].split(",")
        row[header.index("anomaly")] = "yes"
        lines[100] = ",".join(row)
    target.write_text("\n".join(lines) + "\n")
    return target


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ("short", "only 199 rows"),
        ("constant", "column(s) ['flow'] never change"),
        ("nan", "line 5001: column 'flow': 'nan' is not a finite number"),
        ("order", "line 3002: column 'timestamp' does not increase"),
        ("label", "line 101: label column 'anomaly' holds 'yes'"),
    ],
)
def test_bad_training_input_exits_2_and_writes_nothing(
    csvs: tuple[Path, Path], tmp_path: Path, capsys: pytest.CaptureFixture[str], change: str, message: str
) -> None:
    bad = edit(csvs[0], tmp_path / "bad.csv", change)
    out = tmp_path / "m.npz"
    assert run("model", "train", "--csv", str(bad), "--label-column", "anomaly", "--out", str(out)) == 2
    err = capsys.readouterr().err
    assert message in err
    assert str(bad) in err
    assert "Fix:" in err
    assert not out.exists()


def test_bad_test_input_and_tampered_model_exit_2(
    csvs: tuple[Path, Path], model: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    report = tmp_path / "r.json"
    bad = edit(csvs[1], tmp_path / "bad.csv", "label")
    args = ["--time-column", "timestamp", "--label-column", "anomaly", "--report", str(report)]
    assert run("model", "evaluate", "--model", str(model), "--test", str(bad), *args) == 2
    assert "holds 'yes'" in capsys.readouterr().err
    assert run("model", "evaluate", "--model", str(model), "--test", str(tmp_path / "none*.csv"), *args) == 2
    assert "no file matches" in capsys.readouterr().err
    tampered = tmp_path / "t.npz"
    data = bytearray(model.read_bytes())
    data[len(data) // 2] ^= 0xFF
    tampered.write_bytes(bytes(data))
    assert run("model", "evaluate", "--model", str(tampered), "--test", str(csvs[1]), *args) == 2
    assert str(tampered) in capsys.readouterr().err
    assert not report.exists()
