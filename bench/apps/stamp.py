"""The latency stamp: a job writes `now - t0` (its producer's clock, same machine)."""

from __future__ import annotations

import os
import time
from pathlib import Path
from typing import TextIO

STAMP_DIR_ENV = "BENCH_STAMP_DIR"
_file: TextIO | None = None
_pid = 0


def record(t0: float) -> None:
    """Append `t0` and this job's enqueue-to-start seconds to this process's file."""
    started = time.time()
    global _file, _pid
    if _file is None or _pid != os.getpid():
        _pid = os.getpid()
        directory = Path(os.environ[STAMP_DIR_ENV])
        _file = (directory / f"{_pid}.txt").open("a", buffering=1)
    _file.write(f"{t0!r} {started - t0:.6f}\n")


def read_all(directory: Path) -> list[tuple[float, float]]:
    """Every stamp written under `directory`: (t0, seconds from t0 to the start)."""
    out: list[tuple[float, float]] = []
    for path in directory.glob("*.txt"):
        for line in path.read_text().splitlines():
            t0, latency = line.split()
            out.append((float(t0), float(latency)))
    return out
