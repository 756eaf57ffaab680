"""Retraining buffer: what a scheduled retrain's recent normal windows cost in RSS, before and after.

With ``retrain_every`` set, every machine keeps its last ``retrain_on`` (default ``learn_after``,
24 h) of normal windows, one every ``hop`` (30 s): 2,880 windows. This fills that buffer for
1,000 tags at the defaults (20 machines x 50 tags, 9 features a tag, as bench/footprint.py) two
ways, each in a fresh child process, A B A B:

  * ``deque``: the ``deque(maxlen=2880)`` of ``Window`` objects the agent used to keep;
  * ``ring``:  ``edge_agent.alerts.recent.RecentWindows`` (features in ``recent.f64`` on disk).

and prints the RSS growth and the Python heap (tracemalloc) each keeps once full, the process CPU
time an append costs, and the time to read the windows back for a retrain. The windows are
written to a temporary folder (about 10 MB a machine).

Run: .venv/bin/python -m bench.retrain_buffer [--machines 20] [--tags 50] [--windows 2880] [--rounds 2]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
import tracemalloc
from collections import deque
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from edge_agent.core import memory  # noqa: E402

FEATURES_PER_TAG = 9


def rss_mib() -> float:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return 0.0


def child(kind: str, machines: int, tags: int, count: int, folder: str) -> dict[str, float]:
    """Fill one buffer per machine with ``count + count // 10`` windows (so the ring wraps); measure."""
    memory.limit_arenas()
    import numpy as np

    from edge_agent.alerts.recent import RECENT_FILE, RecentWindows
    from models.features import Window

    width = tags * FEATURES_PER_TAG
    rng = np.random.default_rng(1)
    template = rng.normal(size=(64, width))
    memory.release_free_memory()
    rss0 = rss_mib()
    tracemalloc.start()
    buffers: list[deque[Window] | RecentWindows] = []
    for m in range(machines):
        if kind == "deque":
            buffers.append(deque(maxlen=count))
        else:
            buffers.append(RecentWindows(Path(folder) / f"m{m:02d}" / RECENT_FILE, count))
    cpu0 = os.times()
    appended = 0
    for i in range(count + count // 10):
        for buffer in buffers:
            features = template[i % 64] + i  # a fresh array per window, as the windower makes
            buffer.append(Window(30.0 * i, 30.0 * i + 60, features, 60, "running"))
            appended += 1
    cpu1 = os.times()
    heap, _ = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    memory.release_free_memory()
    rss1 = rss_mib()
    start = time.perf_counter()
    back = buffers[0].windows() if isinstance(buffers[0], RecentWindows) else list(buffers[0])
    read_s = time.perf_counter() - start
    assert len(back) == count
    return {
        "rss_mib": rss1 - rss0,
        "heap_mib": heap / 2**20,
        "append_us": (cpu1.user + cpu1.system - cpu0.user - cpu0.system) / appended * 1e6,
        "read_ms": read_s * 1e3,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--machines", type=int, default=20)
    parser.add_argument("--tags", type=int, default=50, help="tags per machine")
    parser.add_argument("--windows", type=int, default=2880, help="retrain_on / hop (24 h / 30 s)")
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--child", choices=["deque", "ring"], help=argparse.SUPPRESS)
    parser.add_argument("--folder", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        print(json.dumps(child(args.child, args.machines, args.tags, args.windows, args.folder)))
        return
    print(
        f"{args.machines} machines x {args.tags} tags = {args.machines * args.tags} tags, "
        f"{args.windows} windows each (ring wraps after that); median of {args.rounds} rounds"
    )
    results: dict[str, list[dict[str, float]]] = {"deque": [], "ring": []}
    for _ in range(args.rounds):
        for kind, runs in results.items():
            with tempfile.TemporaryDirectory() as folder:
                argv = [sys.executable, "-m", "bench.retrain_buffer", "--child", kind, "--folder", folder]
                argv += ["--machines", str(args.machines), "--tags", str(args.tags), "--windows", str(args.windows)]
                out = subprocess.run(argv, check=True, capture_output=True, text=True, cwd=ROOT).stdout
                runs.append(json.loads(out))
    for kind, runs in results.items():
        med = {key: statistics.median(r[key] for r in runs) for key in runs[0]}
        print(
            f"{kind:6s} RSS +{med['rss_mib']:7.1f} MiB  heap {med['heap_mib']:7.1f} MiB  "
            f"append {med['append_us']:6.1f} us CPU  read back one machine {med['read_ms']:6.1f} ms"
        )


if __name__ == "__main__":
    main()
