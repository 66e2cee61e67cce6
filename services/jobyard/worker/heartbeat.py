"""Worker liveness: a heartbeat file refreshed only while Redis answers.

`jobyard worker --check` exits 0 when the file is fresh, 1 otherwise; Kubernetes uses that
as the liveness probe (no `celery inspect ping`, which is slow and fails on busy workers).
The same beat registers the worker in `jobyard:workers:<queue>` for live-worker counts.
"""

from __future__ import annotations

import contextlib
import logging
import threading
import time
from pathlib import Path

import redis

from jobyard.core import keys

log = logging.getLogger("jobyard.worker")


def heartbeat_path(directory: Path, queue: str) -> Path:
    return directory / f"worker-{queue}.heartbeat"


class Heartbeat(threading.Thread):
    """Touches the heartbeat file and the worker registry every `interval_s`."""

    def __init__(
        self, client: redis.Redis, queue: str, hostname: str, path: Path, interval_s: float
    ) -> None:
        super().__init__(name="jobyard-heartbeat", daemon=True)
        self.client = client
        self.queue = queue
        self.hostname = hostname
        self.path = path
        self.interval_s = interval_s
        self._stop_event = threading.Event()

    def beat_once(self) -> bool:
        try:
            now = time.time()
            pipe = self.client.pipeline(transaction=False)
            pipe.zadd(keys.workers(self.queue), {self.hostname: now})
            pipe.zremrangebyscore(keys.workers(self.queue), "-inf", now - 10 * self.interval_s)
            pipe.execute()
        except redis.RedisError as exc:
            log.warning("heartbeat: redis unreachable: %s", exc)
            return False
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self.path.touch()
        return True

    def run(self) -> None:
        while not self._stop_event.is_set():
            self.beat_once()
            self._stop_event.wait(self.interval_s)

    def stop(self) -> None:
        self._stop_event.set()
        with contextlib.suppress(redis.RedisError):
            self.client.zrem(keys.workers(self.queue), self.hostname)


def check(path: Path, max_age_s: float) -> tuple[bool, str]:
    """Liveness verdict from the heartbeat file."""
    try:
        age = time.time() - path.stat().st_mtime
    except FileNotFoundError:
        return False, f"no heartbeat file at {path}"
    if age > max_age_s:
        return False, f"heartbeat is {age:.0f} s old (limit {max_age_s:g} s)"
    return True, f"heartbeat {age:.1f} s old"
