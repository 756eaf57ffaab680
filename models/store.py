"""Model files: numpy arrays plus one JSON header in an ``.npz``, loaded without pickle.

A model file may come from a USB stick or another site, so loading it must never run code:
``np.load(..., allow_pickle=False)`` refuses object arrays, and the header carries a format
version and a SHA-256 over the header and every array. A file that was edited, truncated or
written by another format version is refused with a ``ModelError`` that says so, instead of
scoring with something nobody trained.
"""

from __future__ import annotations

import hashlib
import json
import os
import zipfile
from pathlib import Path
from typing import Any

import numpy as np

from edge_agent.core.errors import ModelError
from models.detectors.base import Arrays

FORMAT = "edge-agent-model"
FORMAT_VERSION = 1
_HEADER = "__header__"


def checksum(header: dict[str, Any], arrays: Arrays) -> str:
    """SHA-256 over the header (without its checksum) and every array's name, dtype, shape and bytes."""
    h = hashlib.sha256()
    body = {k: v for k, v in header.items() if k != "checksum"}
    h.update(json.dumps(body, sort_keys=True, separators=(",", ":")).encode())
    for name in sorted(arrays):
        a = np.ascontiguousarray(arrays[name])
        h.update(f"{name}|{a.dtype.str}|{a.shape}|".encode())
        h.update(a.tobytes())
    return h.hexdigest()


def save(path: str | Path, header: dict[str, Any], arrays: Arrays) -> str:
    """Write atomically (``<path>.tmp`` then rename); return the checksum, which is the model's identity."""
    for name, a in arrays.items():
        if a.dtype.kind not in "biuf":
            raise ModelError(f"array {name!r} has dtype {a.dtype}; model files hold numbers only")
    full = {**header, "format": FORMAT, "version": FORMAT_VERSION}
    full["checksum"] = checksum(full, arrays)
    target = Path(path)
    tmp = target.with_name(target.name + ".tmp")
    blob = np.frombuffer(json.dumps(full, sort_keys=True).encode(), dtype=np.uint8)
    with tmp.open("wb") as f:
        contents: dict[str, Any] = {_HEADER: blob, **arrays}
        np.savez(f, allow_pickle=False, **contents)
        f.flush()
        os.fsync(f.fileno())
    tmp.replace(target)
    return str(full["checksum"])


def load(path: str | Path) -> tuple[dict[str, Any], Arrays]:
    """Read and verify a model file. Raises ``ModelError`` naming the file and what to do."""
    where = str(path)
    try:
        with Path(where).open("rb") as f, np.load(f, allow_pickle=False) as npz:  # our handle: closed on errors
            arrays: Arrays = {name: npz[name] for name in npz.files}
    except FileNotFoundError:
        raise ModelError(f"{where}: no such model file. Fix: train one with 'edge-agent model train'") from None
    except (OSError, ValueError, zipfile.BadZipFile, EOFError) as exc:
        raise ModelError(f"{where}: not a readable model file ({exc}). Fix: retrain or copy the file again") from exc
    raw = arrays.pop(_HEADER, None)
    if raw is None:
        raise ModelError(f"{where}: no model header; this is not an edge-agent model file. Fix: retrain")
    try:
        header = json.loads(raw.tobytes().decode())
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise ModelError(f"{where}: model header is damaged. Fix: retrain or copy the file again") from exc
    if not isinstance(header, dict) or header.get("format") != FORMAT:
        raise ModelError(f"{where}: not an edge-agent model file. Fix: retrain")
    if header.get("version") != FORMAT_VERSION:
        raise ModelError(
            f"{where}: model format version {header.get('version')!r}, this agent reads version {FORMAT_VERSION}. "
            "Fix: retrain with this version of the agent"
        )
    if header.get("checksum") != checksum(header, arrays):
        raise ModelError(
            f"{where}: checksum mismatch, the file was changed or damaged after training. "
            "Fix: retrain or copy the original file again"
        )
    return header, arrays
