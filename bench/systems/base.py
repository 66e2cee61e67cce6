"""What every system adapter provides to the workloads."""

from __future__ import annotations

import os
import sys
import time
from abc import ABC, abstractmethod
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import ClassVar

from bench.procs import WorkerGroup
from bench.redis_server import BenchRedis

ROOT = Path(__file__).resolve().parents[2]
SOLO = "solo"
"""One worker process running one job at a time."""
MULTI = "multi"
"""One worker using both cores (two child processes, or two processes where the system
has no multi-process worker)."""


class BenchError(RuntimeError):
    """A system could not be started or did not finish its work in time."""


@dataclass
class BenchEnv:
    """What the harness shares with every adapter."""

    redis: BenchRedis
    workdir: Path
    python: str = sys.executable
    root: Path = ROOT
    extra_env: dict[str, str] = field(default_factory=dict)

    def script(self, name: str) -> str:
        """A console script installed beside the interpreter (`rq`, `arq`, ...)."""
        return str(Path(self.python).parent / name)


Producer = Callable[[float], None]
"""Enqueues one stamp job carrying its producer timestamp `t0`."""


class System(ABC):
    """A job system: how to fill its queue, run its worker and know when it is done."""

    name: ClassVar[str]
    """Short id used on the command line and in reports."""
    description: ClassVar[str]
    modes: ClassVar[tuple[str, ...]] = (SOLO, MULTI)
    poll_commands: ClassVar[int] = 1
    """Redis commands one :meth:`pending` call sends (subtracted from the counts)."""

    def __init__(self, env: BenchEnv) -> None:
        self.env = env

    def process_env(self) -> dict[str, str]:
        env = {k: v for k, v in os.environ.items() if not k.startswith(("JOBYARD_", "OTEL_"))}
        env.update(
            PYTHONPATH=os.pathsep.join([str(self.env.root), str(self.env.root / "services")]),
            PYTHONUNBUFFERED="1",
            BENCH_REDIS_URL=self.env.redis.url,
        )
        env.update(self.env.extra_env)
        return env

    @abstractmethod
    def worker_commands(self, mode: str) -> list[list[str]]:
        """The process(es) of one worker in `mode`."""

    @abstractmethod
    def fill(self, n: int) -> None:
        """Enqueue `n` no-op jobs (not timed)."""

    @abstractmethod
    def pending(self) -> int:
        """Jobs not finished yet: waiting plus delivered-but-unacknowledged."""

    @abstractmethod
    def producer(self) -> Producer:
        """A function that enqueues one stamp job, the way an application would."""

    def close(self) -> None:  # noqa: B027  (optional hook)
        """Release clients the adapter opened in this process."""

    def start_worker(self, mode: str, log_name: str, stamp_dir: Path | None = None) -> WorkerGroup:
        env = self.process_env()
        if stamp_dir is not None:
            env["BENCH_STAMP_DIR"] = str(stamp_dir)
        log_path = self.env.workdir / "logs" / f"{log_name}.log"
        log_path.parent.mkdir(parents=True, exist_ok=True)
        return WorkerGroup(self.worker_commands(mode), env, log_path, self.env.root)

    def wait_drained(
        self, group: WorkerGroup | None, timeout_s: float, interval_s: float = 0.02
    ) -> int:
        """Poll until nothing is pending twice in a row; returns the number of polls made.

        Twice: a message popped from its list is not yet in the system's in-flight set
        for a moment.
        """
        deadline = time.monotonic() + timeout_s
        polls = zeros = 0
        while True:
            polls += 1
            left = self.pending()
            zeros = zeros + 1 if left == 0 else 0
            if zeros == 2:
                return polls
            if group is not None and not group.alive():
                raise BenchError(f"{self.name}: worker exited:\n{group.log()[-3000:]}")
            if time.monotonic() > deadline:
                raise BenchError(f"{self.name}: {left} job(s) still pending after {timeout_s:g} s")
            time.sleep(interval_s)

    def warm_up(self, group: WorkerGroup, n: int = 20, timeout_s: float = 60) -> None:
        """Run a few jobs so that the worker is started, forked and imported everything."""
        self.fill(n)
        self.wait_drained(group, timeout_s, interval_s=0.05)
