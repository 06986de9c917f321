"""What the benchmark scripts share: where the repository and the real data are, the machine's name, and
the lock that keeps two timed runs on one machine from overlapping.

Scripts run as ``python benchmarks/<name>.py`` from the repository root, so ``import common`` finds this file.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import platform
from collections.abc import Iterator
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
DATA = Path(os.environ.get("GESTUREKIT_DATA", REPO.parent / "shared" / "data"))
RESULTS = REPO / "benchmarks" / "results"
LOCK = Path("/tmp/gesturekit-bench.lock")


def cpu_name() -> str:
    """The CPU's model name (``/proc/cpuinfo``), else what ``platform`` knows."""
    cpuinfo = Path("/proc/cpuinfo")
    for line in cpuinfo.read_text().splitlines() if cpuinfo.is_file() else []:
        if line.startswith("model name"):
            return line.split(":", 1)[1].strip()
    return platform.processor() or platform.machine()


@contextlib.contextmanager
def bench_lock() -> Iterator[None]:
    """Exclusive ``flock`` on the shared benchmark lock file (other jobs time things too)."""
    with open(LOCK, "a") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)
