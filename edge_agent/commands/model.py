"""``edge-agent model train`` and ``edge-agent model evaluate``: models offline, from CSV files.

``register(subparsers)`` adds the ``model`` command to the agent's CLI. Exit codes: 0 done,
2 bad input (file, column, model) with a message naming it and the fix; nothing is written
then.

    edge-agent model train --csv week.csv --time-column timestamp --out pump.npz
    edge-agent model evaluate --model pump.npz --test 'zoo-*.csv' --time-column timestamp \\
        --label-column anomaly --predictions pred.csv --report report.json
    edge-agent model evaluate --train healthy.csv --train-rows 86400 --test faulty.csv \\
        --time-column timestamp --label-column anomaly
"""

from __future__ import annotations

import argparse
import asyncio
import csv
import glob
import json
import os
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

import numpy as np
from pydantic import SecretStr

from edge_agent.commands import progress as progress_bars
from edge_agent.commands.progress import progress, track
from edge_agent.core.durations import parse_duration
from edge_agent.core.errors import ModelError
from models.alerts import AlertPolicy
from models.csvdata import Table, check_trainable, read_table
from models.detectors import DETECTORS
from models.evaluate import Counts, replay
from models.features import FEATURES, Window, Windower, WindowSet, WindowSpec
from models.model import MIN_WINDOWS, MachineModel

if TYPE_CHECKING:
    from edge_agent.alerts import influx_history

_HISTORY_TIMEOUT_S = 60.0  # per connect and per wait for data: a day of history may take longer in all


def register(subparsers: Any) -> None:
    """Add ``model train`` and ``model evaluate`` to an argparse subparsers object."""
    model = subparsers.add_parser("model", help="train and evaluate anomaly models offline from CSV files")
    sub = model.add_subparsers(dest="model_command", required=True)

    train = sub.add_parser("train", help="learn a model from a CSV or InfluxDB history of normal operation")
    source = train.add_mutually_exclusive_group(required=True)
    source.add_argument("--csv", help="training data (rows labelled 1 are left out)")
    source.add_argument(
        "--influx", metavar="URL", help="read history from InfluxDB (1.x /query), e.g. http://host:8086"
    )
    history = train.add_argument_group(
        "InfluxDB history (with --influx; credentials from INFLUX_USERNAME/INFLUX_PASSWORD or INFLUX_TOKEN)"
    )
    history.add_argument("--database", help="InfluxDB database (2.x: the database mapped to the bucket)")
    history.add_argument("--machine", help="machine id as in the agent config (the 'machine' tag)")
    history.add_argument("--since", default="24h", help="how far back to read (default 24h)")
    history.add_argument("--site", default=None, help="only this site (the 'site' tag), if several share the database")
    history.add_argument("--state-signal", default="state_code", help="tag with the operating state code, if stored")
    _data_options(train, time_required=False)
    train.add_argument("--label-column", default=None, help="0/1 column; rows with 1 are not learned")
    train.add_argument("--out", required=True, help="model file to write (.npz)")
    _model_options(train)
    train.set_defaults(func=cmd_train)

    versions = sub.add_parser("versions", help="list the model versions the agent keeps for a machine")
    versions.add_argument("--data-dir", default="data/alerts", help="the alerts.data_dir of the agent config")
    versions.add_argument("--machine", required=True, help="machine id")
    versions.set_defaults(func=cmd_versions)

    ev = sub.add_parser("evaluate", help="score labelled CSVs causally and report detection quality")
    source = ev.add_mutually_exclusive_group(required=True)
    source.add_argument("--model", help="a model file from 'model train'")
    source.add_argument("--train", help="train on this CSV first (see --train-rows)")
    ev.add_argument("--train-rows", type=int, default=None, help="use only the first N rows of --train")
    ev.add_argument("--test", required=True, nargs="+", help="test CSV file(s) or glob pattern(s)")
    _data_options(ev, time_required=True)
    ev.add_argument("--label-column", required=True, help="the 0/1 ground-truth column (edge-sim: anomaly)")
    ev.add_argument("--predictions", default=None, help="write per-row predictions to this CSV")
    ev.add_argument("--report", default=None, help="write the metrics as JSON to this file")
    ev.add_argument("--k", type=int, default=3, help="raise after k of n windows over the threshold")
    ev.add_argument("--n", type=int, default=5)
    _model_options(ev)
    ev.set_defaults(func=cmd_evaluate)


def _data_options(parser: argparse.ArgumentParser, *, time_required: bool) -> None:
    parser.add_argument("--time-column", required=time_required, default="timestamp", help="ISO 8601 or epoch seconds")
    parser.add_argument("--sep", default=",", help="field separator (default ',')")
    parser.add_argument("--signals", nargs="+", default=None, help="columns to model (default: every numeric one)")
    parser.add_argument("--state-column", default="state", help="operating state column, if any (default 'state')")


def _model_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--no-progress", action="store_true", help="no progress bars (they only show on a terminal)")
    parser.add_argument("--detector", default="pca", choices=sorted(DETECTORS))
    parser.add_argument("--window", default="60s", help="window length (default 60s)")
    parser.add_argument("--hop", default="30s", help="window hop (default 30s)")
    parser.add_argument("--false-alarms-per-day", type=float, default=0.5)
    parser.add_argument("--seed", type=int, default=0)


def _fail(message: str) -> int:
    print(f"error: {message}", file=sys.stderr)
    return 2


def _spec(args: argparse.Namespace) -> WindowSpec:
    try:
        return WindowSpec(parse_duration(args.window), parse_duration(args.hop))
    except ValueError as exc:
        raise ModelError(f"--window/--hop: {exc}") from None


def _train(table: Table, args: argparse.Namespace) -> MachineModel:
    spec = _spec(args)
    dt = float(np.median(np.diff(table.time_s))) if len(table.time_s) > 1 else 1.0
    check_trainable(table, int((spec.length_s + MIN_WINDOWS * spec.hop_s) / max(dt, 1e-9)), MIN_WINDOWS)
    states = list(table.states)
    if table.labels is not None:
        states = ["fault" if bad else s for s, bad in zip(states, table.labels, strict=True)]
    windows = featurise(table.time_s, table.values, spec, states)
    return MachineModel.train(
        windows,
        table.signals,
        spec,
        detector=args.detector,
        false_alarms_per_day=args.false_alarms_per_day,
        seed=args.seed,
    )


def featurise(time_s: Any, values: Any, spec: WindowSpec, states: list[str]) -> WindowSet:
    """``models.features.windows_from_arrays`` with a progress bar over the rows (same windows; tested)."""
    windower = Windower(spec, values.shape[1])
    out: list[Window] = []
    with progress(total=len(time_s), desc="windows", unit="row") as bar:
        for i in range(len(time_s)):
            out.extend(windower.push(float(time_s[i]), values[i], states[i]))
            if i % 4096 == 4095:
                bar.update(4096)
        bar.update(len(time_s) % 4096)
    width = values.shape[1] * len(FEATURES)
    return WindowSet(
        np.vstack([w.features for w in out]) if out else np.empty((0, width)),
        np.array([w.start_s for w in out]),
        np.array([w.end_s for w in out]),
        [w.state for w in out],
        windower.skipped,
    )


def _describe(model: MachineModel) -> str:
    parts = [
        f"{state}: {sm.n_windows} windows, threshold {sm.threshold.value:.4g}" for state, sm in model.states.items()
    ]
    return f"{model.detector} model on {len(model.signals)} signals ({', '.join(model.signals)}); " + "; ".join(parts)


def cmd_train(args: argparse.Namespace) -> int:
    """Train on one CSV and write the model file (atomically, only when everything worked)."""
    if args.no_progress:
        progress_bars.disable()
    began = time.perf_counter()
    try:
        table = _read_influx(args) if args.influx else _read_csv(args.csv, args, args.signals)
        model = _train(table, args)
        version = model.save(args.out)
    except ModelError as exc:
        return _fail(str(exc))
    print(f"wrote {args.out} (version {version}) in {time.perf_counter() - began:.1f} s: {_describe(model)}")
    return 0


def _read_csv(path: str, args: argparse.Namespace, signals: list[str] | None, max_rows: int | None = None) -> Table:
    """A CSV read with the data options every command shares (``_data_options``)."""
    return read_table(
        path,
        time_column=args.time_column,
        sep=args.sep,
        signals=signals,
        label_column=args.label_column,
        state_column=args.state_column,
        max_rows=max_rows,
    )


def _read_influx(args: argparse.Namespace) -> Table:
    from edge_agent.alerts import influx_history  # only this command needs it

    if not args.database or not args.machine:
        raise ModelError("--influx needs --database and --machine. Fix: add them (the machine id from the config)")
    try:
        since = parse_duration(args.since)
    except ValueError as exc:
        raise ModelError(f"--since: {exc}") from None
    state_signal = args.state_signal or None
    query = influx_history.build_query(
        args.machine, since, influx_history.wanted_tags(args.signals, state_signal), args.site
    )
    with progress(desc="rows read", unit="point") as bar:
        series = asyncio.run(_query_history(args.influx, args.database, query, bar.update))
    table = influx_history.table_from_series(
        series,
        f"InfluxDB {args.influx} database {args.database!r} machine {args.machine!r}",
        since,
        signals=args.signals,
        state_signal=state_signal,
    )
    print(f"read {len(table.time_s)} rows of {len(table.signals)} signals from {table.path}")
    return table


async def _query_history(
    url: str, database: str, query: str, on_rows: Callable[[int], object]
) -> influx_history.Series:
    """Run the history query through the InfluxDB client, adding each chunk of the answer as it arrives.

    Credentials come from the environment (never the command line, which other users can see in
    ``ps``): ``INFLUX_TOKEN`` (2.x compat), else ``INFLUX_USERNAME`` + ``INFLUX_PASSWORD`` (1.x).
    """
    from edge_agent.alerts import influx_history  # only this command needs it
    from edge_agent.delivery.config import InfluxConfig
    from edge_agent.delivery.influx_writer import InfluxV1Writer, QueryFailed

    where = f"InfluxDB {url} database {database!r}"
    if urlsplit(url).scheme not in ("http", "https"):
        raise ModelError(f"--influx {url!r}: not an http(s) URL. Fix: write it like http://host:8086")
    token, user = os.environ.get("INFLUX_TOKEN"), os.environ.get("INFLUX_USERNAME")
    config = InfluxConfig(
        version=1,
        url=url,
        database=database,
        token=SecretStr(token) if token else None,
        username=user if user and not token else None,
        password=SecretStr(os.environ.get("INFLUX_PASSWORD", "")) if user and not token else None,
        timeout=_HISTORY_TIMEOUT_S,
    )
    client = InfluxV1Writer(config)
    series: influx_history.Series = {}
    try:
        async for document in client.query(query):
            on_rows(influx_history.add_chunk(series, document, where))
    except QueryFailed as exc:
        if exc.status in (401, 403):
            raise ModelError(
                f"{where}: not authorised (HTTP {exc.status}). Fix: set INFLUX_USERNAME and INFLUX_PASSWORD "
                "(InfluxDB 1.x) or INFLUX_TOKEN (2.x) in the environment"
            ) from None
        if exc.status is not None:
            raise ModelError(f"{where}: the query failed with HTTP {exc.status}: {exc.detail}") from None
        raise ModelError(f"{where}: cannot reach it ({exc.detail}). Fix: check --influx (http://host:8086)") from None
    finally:
        await client.close()
    return series


def cmd_versions(args: argparse.Namespace) -> int:
    """List a machine's model files, newest first; say how to pin one."""
    from edge_agent.alerts.versions import machine_folder, stored_models  # only this command needs it

    folder = machine_folder(Path(args.data_dir), args.machine)
    stored = stored_models(folder)
    if not stored:
        return _fail(f"{folder}: no model files. Fix: check --data-dir (alerts.data_dir) and --machine")
    for s in stored:
        mark = "current" if s.current else "kept"
        print(f"{s.version}  {s.trained_at}  {s.detector:<8} {mark:<8} {s.path}")
    print(f"pin one with alerts.machines.{args.machine}.model_version: <version> (then restart the agent)")
    return 0


def _test_files(patterns: list[str]) -> list[str]:
    files: list[str] = []
    for pattern in patterns:
        found = sorted(glob.glob(pattern)) if any(c in pattern for c in "*?[") else [pattern]
        if not found:
            raise ModelError(f"--test {pattern!r}: no file matches. Fix: check the pattern (quote it in the shell)")
        files.extend(found)
    return files


def cmd_evaluate(args: argparse.Namespace) -> int:
    """Train or load, check every test file, then replay them and report (micro-averaged)."""
    if args.no_progress:
        progress_bars.disable()
    try:
        if args.model:
            model = MachineModel.load(args.model)
        else:
            table = _read_csv(args.train, args, args.signals, max_rows=args.train_rows)
            model = _train(table, args)
        policy = AlertPolicy(k=args.k, n=args.n)
        files = _test_files(args.test)
        tests = [_read_csv(path, args, model.signals) for path in track(files, desc="reading test files", unit="file")]
    except ModelError as exc:
        return _fail(str(exc))
    counts = Counts()
    per_file: dict[str, Any] = {}
    runs = []
    for t in track(tests, desc="replaying test files", unit="file"):
        assert t.labels is not None
        run = replay(model, t.time_s, t.values, t.states, policy)
        counts.add(t.time_s, t.labels, run)
        one = Counts()
        one.add(t.time_s, t.labels, run)
        per_file[t.path] = one.report()
        runs.append((t, run))
    report = {"model": {"detector": model.detector, "version": model.version or None, "signals": model.signals}}
    report |= {"overall": counts.report(), "files": per_file}
    _print(report["overall"])
    if args.predictions:
        _write_predictions(args.predictions, runs)
    text = json.dumps(report, indent=2)
    if args.report:
        Path(args.report).write_text(text + "\n")
        print(f"wrote {args.report}")
    else:
        print(text)
    return 0


def _print(r: dict[str, Any]) -> None:
    def f(v: Any) -> str:
        return "-" if v is None else f"{v:g}" if isinstance(v, float) else str(v)

    print(
        f"point-wise: precision {f(r['precision'])}  recall {f(r['recall'])}  F1 {f(r['f1'])}  "
        f"false-alarm rate {f(r['false_alarm_rate'])}  missed-alarm rate {f(r['missed_alarm_rate'])}"
    )
    print(
        f"event-wise: {r['episodes_detected']}/{r['episodes']} episodes detected (recall {f(r['event_recall'])}), "
        f"mean delay {f(r['mean_detection_delay_s'])} s; {r['false_alerts']} false alert(s) in {f(r['days'])} days "
        f"= {f(r['false_alerts_per_day'])}/day"
    )


def _write_predictions(path: str, runs: list[Any]) -> None:
    tmp = Path(path + ".part")
    with tmp.open("w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["file", "time_s", "label", "predicted", "level"])
        for table, run in runs:
            for i in range(len(table.time_s)):
                level = "" if np.isnan(run.level[i]) else f"{run.level[i]:.4f}"
                w.writerow([table.path, f"{table.time_s[i]:.3f}", int(table.labels[i]), int(run.predicted[i]), level])
    tmp.replace(path)
