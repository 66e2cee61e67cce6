"""Worker processes: started in their own process group, paused and resumed as one, and
measured as a tree (CPU time and peak RSS of every process, children included)."""

from __future__ import annotations

import contextlib
import os
import shlex
import signal
import subprocess
import threading
from collections.abc import Sequence
from pathlib import Path

import psutil


class WorkerGroup:
    """One or more worker processes in a process group of their own."""

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

    @property
    def pgid(self) -> int:
        return self.proc.pid

    def alive(self) -> bool:
        return self.proc.poll() is None

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")

    def pause(self) -> None:
        os.killpg(self.pgid, signal.SIGSTOP)

    def resume(self) -> None:
        os.killpg(self.pgid, signal.SIGCONT)

    def tree(self) -> list[psutil.Process]:
        """Every live process of the group (the first one and its descendants)."""
        try:
            root = psutil.Process(self.proc.pid)
            return [root, *root.children(recursive=True)]
        except psutil.Error:
            return []

    def cpu_s(self) -> float:
        """CPU seconds used by the trees so far (reaped children included)."""
        total = 0.0
        for proc in self.tree():
            with contextlib.suppress(psutil.Error):
                t = proc.cpu_times()
                total += t.user + t.system + t.children_user + t.children_system
        return total

    def memory_bytes(self) -> tuple[int, int]:
        """(RSS, PSS) summed over the tree; PSS splits pages that forked processes share."""
        rss = pss = 0
        for proc in self.tree():
            with contextlib.suppress(psutil.Error):
                full = proc.memory_full_info()
                rss += full.rss
                pss += getattr(full, "pss", full.rss)
        return rss, pss

    def stop(self) -> None:
        """Kill the whole group: measurements are taken, nothing needs a clean shutdown."""
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.pgid, signal.SIGKILL)
        with contextlib.suppress(subprocess.TimeoutExpired):
            self.proc.wait(10)
        self._log.close()


class PeakRss:
    """Samples a group's RSS and PSS (sums over its tree) every `interval_s` in a thread."""

    def __init__(self, group: WorkerGroup, interval_s: float = 0.05) -> None:
        self.group = group
        self.interval_s = interval_s
        self.peak_bytes = 0
        self.peak_pss_bytes = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def __enter__(self) -> PeakRss:
        self._sample()
        self._thread.start()
        return self

    def __exit__(self, *_: object) -> None:
        self._stop.set()
        self._thread.join()
        self._sample()

    def _sample(self) -> None:
        rss, pss = self.group.memory_bytes()
        self.peak_bytes = max(self.peak_bytes, rss)
        self.peak_pss_bytes = max(self.peak_pss_bytes, pss)

    def _run(self) -> None:
        while not self._stop.wait(self.interval_s):
            self._sample()
