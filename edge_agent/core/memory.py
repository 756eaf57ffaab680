"""Process memory settings that keep the agent within its footprint (≤ 100 MB RSS for 1,000 tags).

Three things cost RSS without doing any work for the agent, measured with bench/footprint.py:

* **OpenBLAS threads.** numpy's OpenBLAS starts a pool of worker threads when numpy is first
  imported (one per core) and gives every thread that does linear algebra its own buffer. The
  matrices of a machine model are small (tens of signals), so more threads buy nothing; one
  costs a thread stack and its buffer. ``OPENBLAS_NUM_THREADS`` is read only when OpenBLAS
  loads, so importing this module sets it (unless the user already did): import it before
  numpy, as ``edge_agent.commands.cli`` does first thing.
* **glibc malloc arenas.** glibc gives each thread that allocates its own arena (up to 8 per
  core), and freed memory stays in the arena it came from. :func:`limit_arenas` caps them at
  two before the agent starts its threads.
* **Freed but kept memory.** Imports and a model's training leave freed blocks in the heap
  that glibc does not hand back on its own; :func:`release_free_memory` (``malloc_trim(0)``)
  returns the free pages to the kernel. It takes a few milliseconds and runs rarely: after
  start-up and after a model was learned.

Everything here is best effort: on a C library without these calls (musl in Alpine) or a
non-Linux system the functions do nothing and say so by their return value. A user's own
``OPENBLAS_NUM_THREADS`` / ``MALLOC_ARENA_MAX`` in the environment always wins.
"""

from __future__ import annotations

import ctypes
import functools
import os
import sys
from typing import Any

BLAS_THREADS = "1"
ARENAS = 2
_M_ARENA_MAX = -8  # mallopt() parameter number, from glibc's malloc.h

os.environ.setdefault("OPENBLAS_NUM_THREADS", BLAS_THREADS)


@functools.cache
def _glibc() -> Any | None:
    """The process's C library if it is glibc (has ``mallopt`` and ``malloc_trim``), else None."""
    if not sys.platform.startswith("linux"):
        return None
    try:
        libc = ctypes.CDLL(None)  # the C library already loaded into this process
    except OSError:
        return None
    if not (hasattr(libc, "mallopt") and hasattr(libc, "malloc_trim") and hasattr(libc, "gnu_get_libc_version")):
        return None
    return libc


def limit_arenas(arenas: int = ARENAS) -> bool:
    """Cap glibc's malloc arenas (call before starting threads); False if not applied."""
    libc = _glibc()
    if libc is None or "MALLOC_ARENA_MAX" in os.environ:  # the environment already decided
        return False
    return bool(libc.mallopt(_M_ARENA_MAX, arenas))


def release_free_memory() -> bool:
    """Hand the heap's free pages back to the kernel (``malloc_trim(0)``); False if not available."""
    libc = _glibc()
    if libc is None:
        return False
    libc.malloc_trim(0)
    return True
