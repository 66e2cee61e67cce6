"""Worker processes: started in their own process group, paused and resumed as one, and
measured as a tree (CPU time and peak RSS of every process, children included)."""

from __future__ import annotations

import contextlib
import os
import shlex
import signal
import subprocess
import threading
import time
from collections.abc import Sequence
from pathlib import Path

import psutil


class WorkerGroup:
    """One or more worker processes sharing one process group (the first one's)."""

    def __init__(
        self, commands: Sequence[Sequence[str]], env: dict[str, str], log_path: Path, cwd: Path
    ) -> None:
        self.log_path = log_path
        self._log = log_path.open("ab")
        if len(commands) == 1:
            argv = list(commands[0])
        else:
            # Several processes in one new session: a shell starts them and waits.
            script = " & ".join(shlex.join(cmd) for cmd in commands) + " & wait"
            argv = ["/bin/sh", "-c", script]
        self.proc = subprocess.Popen(
            argv,
            env=env,
            cwd=str(cwd),
            stdout=self._log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        self.procs = [self.proc]

    @property
    def pgid(self) -> int:
        return self.procs[0].pid

    def alive(self) -> bool:
        return all(p.poll() is None for p in self.procs)

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")

    def pause(self) -> None:
        os.killpg(self.pgid, signal.SIGSTOP)

    def resume(self) -> None:
        os.killpg(self.pgid, signal.SIGCONT)

    def tree(self) -> list[psutil.Process]:
        """Every live process of the group's trees."""
        out: list[psutil.Process] = []
        for p in self.procs:
            with contextlib.suppress(psutil.Error):
                root = psutil.Process(p.pid)
                out.append(root)
                out.extend(root.children(recursive=True))
        return out

    def cpu_s(self) -> float:
        """CPU seconds used by the trees so far (reaped children included)."""
        total = 0.0
        for proc in self.tree():
            with contextlib.suppress(psutil.Error):
                t = proc.cpu_times()
                total += t.user + t.system + t.children_user + t.children_system
        return total

    def rss_bytes(self) -> int:
        total = 0
        for proc in self.tree():
            with contextlib.suppress(psutil.Error):
                total += proc.memory_info().rss
        return total

    def stop(self, timeout_s: float = 15) -> None:
        """SIGTERM the group (resumed first), then SIGKILL what is left."""
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.pgid, signal.SIGCONT)
            os.killpg(self.pgid, signal.SIGTERM)
        deadline = time.monotonic() + timeout_s
        for p in self.procs:
            try:
                p.wait(max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                pass
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.pgid, signal.SIGKILL)
        for p in self.procs:
            with contextlib.suppress(subprocess.TimeoutExpired):
                p.wait(5)
        self._log.close()


class PeakRss:
    """Samples a group's RSS (sum over its trees) every `interval_s` in a thread."""

    def __init__(self, group: WorkerGroup, interval_s: float = 0.05) -> None:
        self.group = group
        self.interval_s = interval_s
        self.peak_bytes = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def __enter__(self) -> PeakRss:
        self.peak_bytes = self.group.rss_bytes()
        self._thread.start()
        return self

    def __exit__(self, *_: object) -> None:
        self._stop.set()
        self._thread.join()
        self.peak_bytes = max(self.peak_bytes, self.group.rss_bytes())

    def _run(self) -> None:
        while not self._stop.wait(self.interval_s):
            self.peak_bytes = max(self.peak_bytes, self.group.rss_bytes())
