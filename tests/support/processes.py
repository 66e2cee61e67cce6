"""Start real jobyard processes (worker, beat, api) for tests, each in its own group."""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[2]


def jobyard_env(redis_url: str, config_path: Path, **extra: str) -> dict[str, str]:
    """The environment of a jobyard process: inherited minus JOBYARD_*, plus these."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("JOBYARD_")}
    env.update(
        JOBYARD_REDIS_URL=redis_url,
        JOBYARD_CONFIG=str(config_path),
        JOBYARD_LOG_LEVEL="INFO",
        # Tests run many workers and beats at once: /metrics only where a test asks.
        JOBYARD_WORKER_METRICS_PORT="0",
        JOBYARD_BEAT_METRICS_PORT="0",
        PYTHONUNBUFFERED="1",
    )
    env.update(extra)
    return open_api_unless_tokens(env)


def open_api_unless_tokens(env: dict[str, str]) -> dict[str, str]:
    """`env` with JOBYARD_API_AUTH=none (and the docs on) when it configures no token and
    no mode.

    Tests that do not exercise authentication run the API open on purpose, as `jobyard dev`
    does; tests that give tokens get them enforced (and the docs off unless they say).
    """
    tokens = any(env.get(k) for k in ("JOBYARD_API_TOKENS", "JOBYARD_ADMIN_TOKENS"))
    if not tokens and "JOBYARD_API_AUTH" not in env:
        env["JOBYARD_API_AUTH"] = "none"
        env.setdefault("JOBYARD_API_DOCS", "true")
    return env


class Proc:
    """A jobyard subprocess; its output goes to a log file the test can read."""

    def __init__(self, args: list[str], env: dict[str, str], log_path: Path) -> None:
        self.args = args
        self.log_path = log_path
        self._log = log_path.open("ab")
        self.popen = subprocess.Popen(
            [sys.executable, "-m", "jobyard.cli", *args],
            env=open_api_unless_tokens(dict(env)),
            cwd=str(ROOT),
            stdout=self._log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )

    @property
    def pid(self) -> int:
        return self.popen.pid

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")

    def wait_for_log(self, needle: str, timeout_s: float = 20) -> None:
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if needle in self.log():
                return
            if self.popen.poll() is not None:
                raise AssertionError(f"process exited {self.popen.returncode}:\n{self.log()}")
            time.sleep(0.05)
        raise AssertionError(f"{needle!r} not in log after {timeout_s} s:\n{self.log()}")

    def send_signal(self, sig: int) -> None:
        self.popen.send_signal(sig)

    def kill_group(self, sig: int = signal.SIGKILL) -> None:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.popen.pid, sig)

    def stop(self, timeout_s: float = 15) -> int | None:
        if self.popen.poll() is None:
            self.popen.send_signal(signal.SIGTERM)
            try:
                self.popen.wait(timeout=timeout_s)
            except subprocess.TimeoutExpired:
                self.kill_group()
                self.popen.wait()
        self.kill_group()
        self._log.close()
        return self.popen.returncode


def wait_until(
    predicate: Callable[[], Any], timeout_s: float = 20, interval_s: float = 0.05
) -> Any:
    """Poll `predicate` until it returns something truthy; fail after `timeout_s`."""
    deadline = time.monotonic() + timeout_s
    last: Any = None
    while time.monotonic() < deadline:
        last = predicate()
        if last:
            return last
        time.sleep(interval_s)
    raise AssertionError(f"condition not met after {timeout_s} s (last value: {last!r})")
