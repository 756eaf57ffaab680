"""Model versions of one machine on disk: the current ``model.npz`` and older ones in ``versions/``.

Why keep old models: a retrain learns whatever the recent weeks looked like, and if a slow fault
crept in unnoticed, the new model calls it normal. Keeping the last few versions lets an
engineer roll back (pin a version in the config) without waiting another ``learn_after``.

Layout of ``<data_dir>/<machine>/``::

    model.npz                                  the current model (loaded at start)
    versions/20261122T100601Z-1ea05d5da314.npz  earlier ones: when trained (UTC) and version

Every file is a plain model file (``models.store``: arrays + JSON, checksummed, no pickle). The
file name is only a label: the version that counts is the checksum inside, checked on load.
"""

from __future__ import annotations

import logging
import re
import time
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

from edge_agent.core.errors import ModelError
from models.model import MachineModel

log = logging.getLogger(__name__)

MODEL_FILE = "model.npz"
VERSIONS_DIR = "versions"


@dataclass(frozen=True, slots=True)
class StoredModel:
    """One model file of a machine, as listed by ``stored_models``."""

    path: Path
    version: str
    trained_at: str
    detector: str
    current: bool


def machine_folder(data_dir: Path, machine: str) -> Path:
    """``<data_dir>/<machine>``, with a folder name for the machine id that cannot climb out of data_dir."""
    return data_dir / (re.sub(r"[^A-Za-z0-9._-]", "_", machine).lstrip(".") or "_")


def stamp(trained_at: str) -> str:
    """``2026-11-22T10:06:01+00:00`` -> ``20261122T100601Z`` (sorts by time; safe in a file name)."""
    try:
        when = datetime.fromisoformat(trained_at)
    except ValueError:
        return re.sub(r"[^0-9A-Za-z]", "", trained_at)[:20] or "unknown"
    return when.strftime("%Y%m%dT%H%M%SZ")


def trained_at_s(model: MachineModel) -> float | None:
    """When the model was trained (Unix seconds), or None if its header does not say."""
    try:
        return datetime.fromisoformat(model.trained_at).timestamp()
    except ValueError:
        return None


def archive_current(folder: Path, keep: int) -> None:
    """Move ``model.npz`` into ``versions/`` (before a new model replaces it) and prune to ``keep`` in all.

    A current file that does not load is not worth keeping as a version: it is left to be
    overwritten.
    """
    current = folder / MODEL_FILE
    if current.exists():
        try:
            model = MachineModel.load(current)
        except ModelError as exc:
            log.warning("alerts: %s is not kept as an old version: %s", current, exc)
        else:
            # trained_at has whole seconds; two retrains in one second (simulated time, tests) would
            # then sort by version hash. The archive moment orders them: it follows training order.
            target = folder / VERSIONS_DIR / f"{stamp(model.trained_at)}-{time.time_ns():020d}-{model.version}.npz"
            target.parent.mkdir(parents=True, exist_ok=True)
            current.replace(target)
    prune(folder, keep)


def prune(folder: Path, keep: int) -> list[Path]:
    """Delete the oldest files in ``versions/`` so that at most ``keep`` models remain (current included)."""
    olds = sorted((folder / VERSIONS_DIR).glob("*.npz"), reverse=True)  # newest first (the name starts with the time)
    room = max(keep - 1, 0)
    removed = olds[room:]
    for path in removed:
        path.unlink(missing_ok=True)
        log.info("alerts: removed old model version %s (keep_models keeps %d)", path, keep)
    return removed


def stored_models(folder: Path) -> list[StoredModel]:
    """Every model file of a machine that loads, newest first (the current one first)."""
    found: list[StoredModel] = []
    candidates = [folder / MODEL_FILE, *sorted((folder / VERSIONS_DIR).glob("*.npz"), reverse=True)]
    for path in candidates:
        if not path.exists():
            continue
        try:
            model = MachineModel.load(path)
        except ModelError as exc:
            log.warning("alerts: skipping %s: %s", path, exc)
            continue
        found.append(StoredModel(path, model.version, model.trained_at, model.detector, path.name == MODEL_FILE))
    return found


def find_version(folder: Path, version: str) -> MachineModel:
    """The model of ``folder`` whose version starts with ``version``; ``ModelError`` naming what exists."""
    stored = stored_models(folder)
    matches = [s for s in stored if s.version.startswith(version)]
    if len(matches) == 1:
        return MachineModel.load(matches[0].path)
    have = ", ".join(f"{s.version} ({s.trained_at})" for s in stored) or "none"
    if not matches:
        raise ModelError(
            f"{folder}: no model version {version!r} (versions kept: {have}). "
            "Fix: set model_version to one of them, or remove it to use the newest"
        )
    raise ModelError(f"{folder}: model version {version!r} is ambiguous ({have}). Fix: give more characters")
