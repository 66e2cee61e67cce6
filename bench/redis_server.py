"""The benchmark's own `redis-server`: a free loopback port, no persistence."""

from __future__ import annotations

import shutil
import socket
import subprocess
import time
from pathlib import Path
from typing import Any

import redis


def free_port() -> int:
    """A TCP port free on the loopback interface right now."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class BenchRedis:
    """A `redis-server` process this run owns (started by :meth:`start`)."""

    def __init__(self, workdir: Path) -> None:
        binary = shutil.which("redis-server")
        if binary is None:
            raise RuntimeError("redis-server is not on PATH (apt-get install redis-server)")
        self.binary = binary
        self.port = free_port()
        self.dir = workdir / "redis"
        self.proc: subprocess.Popen[bytes] | None = None
        self.client: redis.Redis = redis.Redis(port=self.port, socket_timeout=120)

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self) -> BenchRedis:
        self.dir.mkdir(parents=True, exist_ok=True)
        args = [
            self.binary,
            "--port", str(self.port),
            "--bind", "127.0.0.1",
            "--dir", str(self.dir),
            "--save", "",
            "--appendonly", "no",
            "--protected-mode", "no",
            "--loglevel", "warning",
        ]  # fmt: skip
        self.proc = subprocess.Popen(args, stdout=subprocess.DEVNULL, stderr=subprocess.STDOUT)
        deadline = time.monotonic() + 10
        while True:
            try:
                if self.client.ping():
                    return self
            except redis.ConnectionError:
                if time.monotonic() > deadline or self.proc.poll() is not None:
                    raise RuntimeError(f"redis-server did not start on port {self.port}") from None
                time.sleep(0.05)

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(5)
        self.client.close()

    def version(self) -> str:
        return str(self.client.info("server")["redis_version"])

    def reset(self) -> None:
        """Empty every database and zero the command counters."""
        self.client.flushall()
        self.client.config_resetstat()

    def command_calls(self) -> dict[str, int]:
        """`INFO commandstats` as {command: calls}."""
        stats: dict[str, Any] = self.client.info("commandstats")
        return {k.removeprefix("cmdstat_"): int(v["calls"]) for k, v in stats.items()}

    def used_memory(self) -> int:
        return int(self.client.info("memory")["used_memory"])


def command_delta(before: dict[str, int], after: dict[str, int]) -> dict[str, int]:
    """Calls per command between two :meth:`BenchRedis.command_calls` snapshots.

    `info` and `config` (the harness's own reads) are left out.
    """
    out = {}
    for name, calls in after.items():
        if name in ("info", "config"):
            continue
        delta = calls - before.get(name, 0)
        if delta:
            out[name] = delta
    return out
