"""``AlertSink``: a sink that learns each machine's normal and raises explained alerts.

``submit`` only turns a batch into one row and appends it to the machine's bounded queue: it
never computes anything, so a slow model can never delay a poll. One task per machine drains
its queue and hands the rows to the engine's one worker thread that cuts windows,
collects training data, learns the model when ``learn_after`` of good running data is in and
one learned state has the windows the trainer needs (``models.model.learning_progress``),
scores windows, steps the alert state machine and writes model and state files. Alert events
come back to the event loop and go to ``on_alert(origin, event)``, which the runtime wires to
the retained MQTT topic ``.../{machine}/alerts``.

Everything of one machine lives in ``data_dir/<machine>/``: ``model.npz`` (see models.store)
and ``alerts.json`` (the alert state), so a restarted agent keeps its model and its open alerts,
and while it learns ``training.f64``: the training windows' features wait on disk, not in RSS
(about 200 MB for 1,000 tags over the default 24 h; see edge_agent/alerts/training.py). With
``retrain_every`` set, the recent normal windows a scheduled retrain learns from wait in the
ring file ``recent.f64`` the same way (edge_agent/alerts/recent.py).
A model file that fails its checksum is renamed ``model.npz.rejected`` and the machine learns
afresh; that is logged once as an error.

One worker thread for all machines, not the loop's default pool: the linear algebra below
(numpy on OpenBLAS) keeps a buffer of about 1.2 MiB per calling thread, so model work spread
over the pool's six threads cost 6-7 MiB of RSS on a box that has 100 MB for the whole agent.
Machines take turns; a learning machine delays the others' scoring by its training time (about
2 s for a day of data), never a poll.
"""

from __future__ import annotations

import asyncio
import contextlib
import fnmatch
import json
import logging
import math
import os
import threading
from collections import deque
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np

from edge_agent.alerts import versions
from edge_agent.alerts.config import AlertsConfig, MachineAlertsConfig
from edge_agent.alerts.recent import RECENT_FILE, RecentWindows
from edge_agent.alerts.training import TRAINING_FILE, TrainingBuffer
from edge_agent.core.errors import ModelError
from edge_agent.core.memory import release_free_memory
from edge_agent.core.origin import Origin
from edge_agent.core.samples import Batch, Quality
from models.alerts import AlertPolicy, AlertState, Transition
from models.explain import explain, iso
from models.features import Window, Windower, WindowSet, WindowSpec
from models.model import Assessment, MachineModel, learning_progress, windows_in
from models.operating_state import RUNNING, StateRule

log = logging.getLogger(__name__)

EVENT_SCHEMA = 1
SCORE_SCHEMA = 1
MAX_LEVEL = 1e9  # a level beyond this (a threshold equal to the typical score) is clamped: JSON has no inf
AlertCallback = Callable[[Origin, dict[str, Any]], None]
ScoreCallback = Callable[[Origin, dict[str, Any]], None]
Output = tuple[str, dict[str, Any]]  # ("alerts", event) or ("scores", score): what a worker step produced
_GAP = None  # a queue entry meaning "the connection dropped": the partial window is discarded


@dataclass(slots=True)
class MachineStats:
    """Counters per machine, for the status page and the tests."""

    rows: int = 0
    dropped_rows: int = 0
    windows: int = 0
    skipped_windows: int = 0
    not_scored: int = 0  # windows in a state that is not learned (off, idle, setup, mixed): never alert
    scored: int = 0
    training_windows: int = 0  # windows collected to learn from (in the learned states)
    learning_needed: int = 0  # windows learning needs, by the trainer's rule (models.model.learning_progress)
    learned: bool = False
    model_version: str = ""
    retrains: int = 0
    pinned: bool = False  # the model version is pinned in the config: never retrained
    trained_at: str | None = None  # when the model in use was trained (ISO 8601 UTC, from its file)
    error: str | None = None  # what stopped this machine's alerts, and its fix (never "not enough data yet")


Row = tuple[float, dict[str, float], object] | None


@dataclass(slots=True)
class _Machine:
    """One machine's queue, windower, training buffer, model and alert state."""

    origin: Origin
    config: MachineAlertsConfig
    folder: Path
    rows: deque[Row]
    wake: asyncio.Event = field(default_factory=asyncio.Event)
    stats: MachineStats = field(default_factory=MachineStats)
    signals: list[str] | None = None
    windower: Windower | None = None
    rule: StateRule | None = None
    model: MachineModel | None = None
    alert: AlertState | None = None
    training: TrainingBuffer | None = None  # windows to learn from, features on disk (see alerts.training)
    stopped: bool = False  # learning failed on what waiting cannot mend: no more windows are collected
    last: dict[str, Any] | None = None  # the explanation of the latest scored window over threshold
    last_assessment: Assessment | None = None
    loaded: bool = False
    recent: RecentWindows | None = None  # normal windows a scheduled retrain learns from (features on disk)
    last_train_s: float | None = None  # sample time of the last (re)training
    retrain_waiting_logged: bool = False
    task: asyncio.Task[None] | None = None
    lock: threading.Lock = field(default_factory=threading.Lock)  # worker thread vs. acknowledge
    busy: bool = False  # rows taken off the queue and not yet fully processed


class AlertSink:
    """Predictive-maintenance alerts as a sink. ``on_alert`` is called on the event loop."""

    name = "alerts"

    def __init__(self, config: AlertsConfig, on_alert: AlertCallback, on_score: ScoreCallback | None = None) -> None:
        self.config = config
        self.on_alert = on_alert
        self.on_score = on_score
        self.policy = AlertPolicy(
            k=config.k,
            n=config.n,
            clear_after=config.clear_after,
            clear_level=config.clear_level,
            cooldown_s=config.cooldown,
            span_s=(config.n - 1) * config.hop + config.window,
        )
        self.spec = WindowSpec(config.window, config.hop, config.min_fill)
        self._machines: dict[str, _Machine] = {}
        self._closed = False
        self._worker = ThreadPoolExecutor(max_workers=1, thread_name_prefix="alerts-model")

    # -- Sink protocol -------------------------------------------------------------------------

    async def start(self) -> None:
        """Create the data directory; machines load their files on their first batch."""
        await asyncio.to_thread(self.config.data_dir.mkdir, parents=True, exist_ok=True)

    async def submit(self, batch: Batch, origin: Origin) -> None:
        """Queue one row per batch (good numeric values); O(tags), no model work here."""
        if self._closed or not self.config.enabled:
            return
        m = self._machine(origin)
        if m is None:
            return
        values: dict[str, float] = {}
        state_value: object = None
        state_tag = m.config.state.signal if m.config.state else None
        newest = 0
        for s in batch.samples:
            if s.quality is not Quality.GOOD or s.value is None:
                continue
            newest = max(newest, s.timestamp_ns)
            if s.tag == state_tag:
                state_value = s.value
            elif isinstance(s.value, int | float) and not isinstance(s.value, bool):
                values[s.tag] = float(s.value)
        if not values:
            return
        if len(m.rows) == m.rows.maxlen:
            m.stats.dropped_rows += 1
        m.rows.append(((newest or batch.polled_at_ns) / 1e9, values, state_value))
        m.wake.set()

    def machine_state_changed(self, origin: Origin, state: str, reason: str | None) -> None:
        """A machine that went away leaves a gap: its partial window is discarded, never bridged."""
        m = self._machines.get(origin.machine)
        if m is not None and state != "up":
            m.rows.append(_GAP)
            m.wake.set()

    async def close(self) -> None:
        """Stop the machine tasks and the worker; rows not processed yet are dropped.

        Alert state is saved on every change, and a partial window is not kept across a restart
        anyway. The worker stops at the next row (a learning under way finishes first): once this
        returns, nothing writes to ``data_dir`` any more, even with a long queue (the demo hands
        over hours of a machine's past at once).
        """
        if self._closed:
            return
        self._closed = True
        for m in self._machines.values():
            m.wake.set()
        tasks = [m.task for m in self._machines.values() if m.task is not None]
        if tasks:
            _, pending = await asyncio.wait(tasks, timeout=5.0)
            for task in pending:
                task.cancel()
            for task in pending:
                with contextlib.suppress(asyncio.CancelledError):
                    await task
        await asyncio.to_thread(self._worker.shutdown, wait=True, cancel_futures=True)

    # -- beyond the protocol -------------------------------------------------------------------

    def stats(self, machine: str) -> MachineStats:
        """Counters of one machine (a copy-free view; read it on the event loop)."""
        m = self._machines.get(machine)
        return m.stats if m is not None else MachineStats()

    def last_assessment(self, machine: str) -> Assessment | None:
        """The machine's most recent scored window (score, threshold, level), None before the first."""
        m = self._machines.get(machine)
        return m.last_assessment if m is not None else None

    def idle(self, machine: str) -> bool:
        """True when every queued row of the machine has been processed (for tests and shutdown)."""
        m = self._machines.get(machine)
        return m is None or (not m.rows and not m.wake.is_set() and not m.busy)

    async def acknowledge(self, machine: str, by: str) -> bool:
        """Someone took the machine's open alert on; emits an ``acknowledged`` event. False if none."""
        m = self._machines.get(machine)
        if m is None:
            return False
        event, _ = await asyncio.to_thread(self._acknowledge, m, by, None)
        if event is None:
            return False
        self._emit(m, [("alerts", event)])
        return True

    async def acknowledge_alert(self, machine: str, alert_id: str, by: str) -> str | None:
        """Acknowledge the open alert ``alert_id`` of ``machine`` (the MQTT command's path).

        None when done (the ``acknowledged`` event is emitted); otherwise why not, in words for the
        person who sent the command: no alert engine for the machine, no open alert, another id,
        already acknowledged.
        """
        m = self._machines.get(machine)
        if m is None:
            known = "alerts are disabled for it" if not self.config.for_machine(machine).enabled else "no data yet"
            return f"machine {machine!r} has no alert engine ({known})"
        event, problem = await asyncio.to_thread(self._acknowledge, m, by, alert_id)
        if event is not None:
            self._emit(m, [("alerts", event)])
        return problem

    def _acknowledge(self, m: _Machine, by: str, alert_id: str | None) -> tuple[dict[str, Any] | None, str | None]:
        with m.lock:
            if not m.loaded:  # right after a restart, before the first batch: the open alert is on disk
                self._load(m)
            alert = m.alert
            if alert is None or not alert.active:
                return None, f"machine {m.origin.machine!r} has no open alert"
            if alert_id is not None and alert.alert_id != alert_id:
                return (
                    None,
                    f"alert {alert_id!r} is not open on {m.origin.machine!r} (the open one is {alert.alert_id!r})",
                )
            at = m.last_assessment.end_s if m.last_assessment else 0.0
            transition = alert.acknowledge(by, at)
            if transition is None:
                return None, f"alert {alert.alert_id!r} is already acknowledged by {alert.acknowledged_by!r}"
            self._save_state(m)
            return self._event(m, transition, None), None

    def add_machine(self, origin: Origin) -> None:
        """Know a machine before its first batch (the runtime calls it at start for every machine).

        So an acknowledge that arrives right after a restart, before the machine was polled,
        finds the alert that is open on disk instead of "no data yet".
        """
        if not self._closed and self.config.enabled:
            self._machine(origin)

    # -- per machine ---------------------------------------------------------------------------

    def _machine(self, origin: Origin) -> _Machine | None:
        m = self._machines.get(origin.machine)
        if m is not None:
            return m
        own = self.config.for_machine(origin.machine)
        if not own.enabled:
            return None
        rows: deque[Row] = deque(maxlen=self.config.queue_rows)
        m = _Machine(origin, own, versions.machine_folder(self.config.data_dir, origin.machine), rows)
        if own.state is not None:
            codes = own.state.codes or {}
            m.rule = StateRule(own.state.signal, codes, own.state.off_below, own.state.running_above)
        else:
            log.warning(
                "alerts: no state signal for machine %r: every window counts as running, so a stopped "
                "machine may alert. Fix: set alerts.state or alerts.machines.%s.state",
                origin.machine,
                origin.machine,
            )
        self._machines[origin.machine] = m
        m.task = asyncio.create_task(self._run(m), name=f"alerts:{origin.machine}")
        return m

    async def _run(self, m: _Machine) -> None:
        while True:
            await m.wake.wait()
            m.wake.clear()
            m.busy = True
            rows: list[Row] = []
            while m.rows:
                rows.append(m.rows.popleft())
            if rows:
                events: list[Output]
                try:
                    loop = asyncio.get_running_loop()
                    events = await loop.run_in_executor(self._worker, self._process, m, rows)
                except ModelError as exc:
                    if m.stats.error != str(exc):
                        log.error("alerts: machine %r: %s", m.origin.machine, exc)  # noqa: TRY400 - the message says it all
                    m.stats.error = str(exc)
                    events = []
                except Exception as exc:  # one machine's failure must not end its alerts for good
                    log.exception("alerts: machine %r: unexpected error; these rows are dropped", m.origin.machine)
                    m.stats.error = repr(exc)
                    events = []
                self._emit(m, events)
            m.busy = False
            if self._closed:
                return

    def _emit(self, m: _Machine, outputs: list[Output]) -> None:
        for kind, body in outputs:
            callback = self.on_alert if kind == "alerts" else self.on_score
            if callback is None:
                continue
            try:
                callback(m.origin, body)
            except Exception:
                log.exception("alerts: the %s callback failed for machine %r", kind, m.origin.machine)

    # -- worker thread: everything below runs off the event loop -------------------------------

    def _process(self, m: _Machine, rows: list[Row]) -> list[Output]:
        with m.lock:
            return self._process_locked(m, rows)

    def _process_locked(self, m: _Machine, rows: list[Row]) -> list[Output]:
        if not m.loaded:
            self._load(m)
        events: list[Output] = []
        for row in rows:
            if self._closed:  # shutting down: the rest would be cut short anyway
                break
            if row is None:
                if m.windower is not None:
                    m.windower.reset()
                continue
            t_s, values, state_value = row
            if m.signals is None:
                m.signals = self._choose_signals(m, values)
                m.windower = Windower(self.spec, len(m.signals))
            assert m.windower is not None
            m.stats.rows += 1
            vector = np.array([values.get(s, np.nan) for s in m.signals])
            state = m.rule.classify(state_value) if m.rule is not None else RUNNING
            before = m.windower.skipped
            for window in m.windower.push(t_s, vector, state):
                m.stats.windows += 1
                events.extend(self._window(m, window))
            m.stats.skipped_windows += m.windower.skipped - before
        return events

    def _choose_signals(self, m: _Machine, values: dict[str, float]) -> list[str]:
        if m.config.signals:
            return list(m.config.signals)
        excluded = self.config.exclude_signals
        return sorted(t for t in values if not any(fnmatch.fnmatch(t, p) for p in excluded))

    def _window(self, m: _Machine, window: Window) -> list[Output]:
        if m.model is None:
            if window.state not in self.config.learn_states or m.stopped:
                m.stats.not_scored += 1
            else:
                self._collect(m, window)
            return []
        assessment = m.model.assess(window)
        if assessment is None:
            m.stats.not_scored += 1
            return []
        m.stats.scored += 1
        m.last_assessment = assessment
        if m.alert is None:
            m.alert = AlertState(m.origin.machine, self.policy)
        transitions = m.alert.observe(assessment.start_s, assessment.end_s, assessment.level)
        outputs: list[Output] = [("alerts", self._event(m, t, assessment)) for t in transitions]
        if transitions:
            self._save_state(m)
        if self.on_score is not None:
            outputs.insert(0, ("scores", self._score(m, assessment)))
        if m.recent is not None:
            self._remember(m, window, assessment, transitions)
            self._maybe_retrain(m, window.end_s)
        return outputs

    def _collect(self, m: _Machine, window: Window) -> None:
        """Keep a window to learn from; learn once the trainer's rule says there are enough.

        Too few windows is never an error: a machine that ran less than planned, or whose windows
        fell into several states, keeps collecting and shows how far it has got. A training that
        fails with enough windows fails on the data or the settings, which waiting cannot mend:
        the machine reports it with its fix and collects no more (no retrying the same way).
        """
        if m.training is None:
            m.training = TrainingBuffer(m.folder / TRAINING_FILE)
        m.training.append(window)
        have, need = self._progress(m.training.counts)
        m.stats.training_windows, m.stats.learning_needed = have, need
        if have < need:
            return
        try:
            windows = m.training.take()
        except ModelError as exc:  # the file could not be read back: the windows are gone, collect afresh
            log.warning("alerts: machine %r: %s", m.origin.machine, exc)
            m.stats.training_windows = 0
            return
        try:
            self._learn(m, windows)
        except ModelError as exc:
            m.stopped = True
            m.stats.training_windows = 0
            fix = "" if "Fix:" in str(exc) else ". Fix: correct the machine's data or the alerts settings"
            m.stats.error = f"{exc}{fix}; learning stopped until the agent restarts"
            log.error("alerts: machine %r: %s", m.origin.machine, m.stats.error)  # noqa: TRY400 - the message says it all

    def _progress(self, counts: dict[str, int]) -> tuple[int, int]:
        """(windows collected, windows needed) to learn, by the trainer's rule."""
        planned = windows_in(self.config.learn_after, self.spec.hop_s)
        return learning_progress(counts, self.config.learn_states, planned)

    def learning_progress(self, machine: str) -> tuple[int, int]:
        """A machine's (windows collected, windows needed) to learn (0 collected before its first window)."""
        m = self._machines.get(machine)
        if m is not None and m.stats.learning_needed:
            return m.stats.training_windows, m.stats.learning_needed
        return self._progress({})

    # -- scheduled retraining (worker thread) ---------------------------------------------------

    def _remember(self, m: _Machine, window: Window, a: Assessment, transitions: list[Transition]) -> None:
        """Keep the window for the next retrain if it was normal: below the threshold, no alert open.

        The windows that led up to a raise (the other n - 1 of the k-of-n rule) go too: a model
        must not learn the start of a fault as normal.
        """
        assert m.recent is not None
        assert m.alert is not None
        if any(t.kind == "raised" for t in transitions):
            m.recent.drop_newest(self.policy.n - 1)
        elif not m.alert.active and a.level < 1.0:
            m.recent.append(window)

    def _maybe_retrain(self, m: _Machine, now_s: float) -> None:
        every = self.config.retrain_every
        assert every is not None
        assert m.recent is not None
        assert m.alert is not None
        if m.last_train_s is None or m.last_train_s > now_s:  # a model trained at another (wall) time
            m.last_train_s = now_s
        if now_s - m.last_train_s < every or m.alert.active:
            return
        planned = min(self._retrain_windows(), windows_in(self.config.learn_after, self.spec.hop_s))
        have, need = learning_progress(m.recent.counts(), self.config.learn_states, planned)
        if have < need:
            if not m.retrain_waiting_logged:
                m.retrain_waiting_logged = True
                log.info(
                    "alerts: machine %r: retrain due, waiting for %d normal windows (has %d)",
                    m.origin.machine,
                    need,
                    have,
                )
            return
        old = m.model.version if m.model is not None else ""
        try:
            self._learn(m, m.recent.windows())
        except ModelError as exc:
            log.warning("alerts: machine %r: retraining failed (%s); keeping model %s", m.origin.machine, exc, old)
            m.last_train_s = now_s
            return
        m.stats.retrains += 1
        m.retrain_waiting_logged = False
        log.info(
            "alerts: machine %r: model %s replaces %s (scheduled retrain)", m.origin.machine, m.stats.model_version, old
        )

    def _retrain_windows(self) -> int:
        """Recent normal windows a scheduled retrain learns from (``retrain_on``, else ``learn_after``)."""
        return windows_in(self.config.retrain_on or self.config.learn_after, self.spec.hop_s)

    def _learn(self, m: _Machine, windows: list[Window]) -> None:
        """Train on ``windows``, keep the previous model as a version, install and save the new one."""
        assert m.signals is not None
        ws = WindowSet(
            np.vstack([w.features for w in windows]),
            np.array([w.start_s for w in windows]),
            np.array([w.end_s for w in windows]),
            [w.state for w in windows],
            m.stats.skipped_windows,
        )
        detector = m.config.detector or self.config.detector
        model = MachineModel.train(
            ws,
            m.signals,
            self.spec,
            detector=detector,
            false_alarms_per_day=self.config.false_alarms_per_day,
            learn_states=tuple(self.config.learn_states),
        )
        m.folder.mkdir(parents=True, exist_ok=True)
        versions.archive_current(m.folder, self.config.keep_models)
        model.save(m.folder / versions.MODEL_FILE)
        self._use(m, model)
        m.stats.error = None
        m.last_train_s = windows[-1].end_s
        # Training freed its matrices (feature stack, covariance, forest) back to malloc, which
        # keeps them; hand them to the kernel. A few ms, once per (re)training: see edge_agent/core/memory.py.
        release_free_memory()
        log.info(
            "alerts: machine %r: learned %s model %s from %d windows (states %s)",
            m.origin.machine,
            detector,
            model.version,
            len(windows),
            sorted(model.states),
        )

    def _use(self, m: _Machine, model: MachineModel) -> None:
        m.model = model
        m.signals = model.signals
        if m.windower is None:
            m.windower = Windower(self.spec, len(model.signals))
        m.stats.learned = True
        m.stats.model_version = model.version
        m.stats.trained_at = model.trained_at or None
        if self.config.retrain_every is not None and not m.stats.pinned and m.recent is None:
            m.recent = RecentWindows(m.folder / RECENT_FILE, self._retrain_windows())

    def _load(self, m: _Machine) -> None:
        m.loaded = True
        for name in (TRAINING_FILE, RECENT_FILE):  # an earlier run's windows: collected afresh, as they always were
            with contextlib.suppress(OSError):
                (m.folder / name).unlink(missing_ok=True)
        self._load_model(m)
        state_path = m.folder / "alerts.json"
        if state_path.exists():
            try:
                m.alert = AlertState.from_dict(json.loads(state_path.read_text()), self.policy)
            except (ModelError, ValueError, OSError) as exc:
                log.warning("alerts: %s: %s; starting with no open alert", state_path, exc)

    def _load_model(self, m: _Machine) -> None:
        pin = m.config.model_version
        if pin is not None:
            try:
                model = versions.find_version(m.folder, pin)
            except ModelError as exc:
                log.error("alerts: machine %r: pinned %s; using the newest model instead", m.origin.machine, exc)  # noqa: TRY400
            else:
                if model.spec == self.spec:
                    m.stats.pinned = True
                    self._use(m, model)
                    log.info(
                        "alerts: machine %r: using pinned model %s (never retrained)", m.origin.machine, model.version
                    )
                    return
                log.error(
                    "alerts: machine %r: pinned model %s has other window settings; not used", m.origin.machine, pin
                )
        path = m.folder / versions.MODEL_FILE
        if path.exists():
            try:
                model = MachineModel.load(path)
            except ModelError as exc:
                log.error("alerts: %s; learning afresh (the file is kept as %s.rejected)", exc, path.name)  # noqa: TRY400
                path.replace(path.with_name(path.name + ".rejected"))
            else:
                if model.spec != self.spec:
                    log.warning("alerts: %s was learned with other window settings; learning afresh", path)
                else:
                    self._use(m, model)
                    m.last_train_s = versions.trained_at_s(model)

    def _save_state(self, m: _Machine) -> None:
        if m.alert is None:
            return
        m.folder.mkdir(parents=True, exist_ok=True)
        path = m.folder / "alerts.json"
        tmp = path.with_name(path.name + ".tmp")
        tmp.write_text(json.dumps(m.alert.to_dict(), sort_keys=True))
        os.replace(tmp, path)

    def _score(self, m: _Machine, a: Assessment) -> dict[str, Any]:
        """One scored window for ``.../{machine}/scores`` (schema 1; docs/models.md)."""
        o = m.origin
        assert m.model is not None
        level = a.level if math.isfinite(a.level) else MAX_LEVEL
        return {
            "schema": SCORE_SCHEMA,
            "site": o.site,
            "area": o.area,
            "line": o.line,
            "machine": o.machine,
            "at": datetime.fromtimestamp(a.end_s, UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z"),
            "score": round(float(a.score), 6),
            "threshold": round(float(a.threshold), 6),
            "level": round(float(max(-MAX_LEVEL, min(level, MAX_LEVEL))), 4),
            "operating_state": a.state,
            "detector": m.model.detector,
            "model_version": m.model.version,
        }

    def _event(self, m: _Machine, t: Transition, assessment: Assessment | None) -> dict[str, Any]:
        """One alert event (schema 1; documented in docs/models.md)."""
        version = m.model.version if m.model is not None else None
        if assessment is not None and t.kind in ("raised", "escalated"):
            m.last = explain(assessment, t.since_s, version or "")
        detail = m.last or {"summary": "", "signals": [], "hint": None}
        o = m.origin
        return {
            "schema": EVENT_SCHEMA,
            "event": t.kind,
            "alert_id": t.alert_id,
            "site": o.site,
            "area": o.area,
            "line": o.line,
            "machine": o.machine,
            "active": t.kind != "cleared",
            "severity": t.severity,
            "acknowledged": t.acknowledged,
            "acknowledged_by": t.acknowledged_by,
            "since": iso(t.since_s),
            "at": iso(t.at_s),
            "level": round(t.level, 3),
            "peak_level": round(t.peak_level, 3),
            "score": None if assessment is None else round(assessment.score, 6),
            "threshold": None if assessment is None else round(assessment.threshold, 6),
            "operating_state": None if assessment is None else assessment.state,
            "detector": m.model.detector if m.model is not None else None,
            "model_version": version,
            "summary": detail["summary"],
            "signals": detail["signals"],
            "hint": detail["hint"],
        }
