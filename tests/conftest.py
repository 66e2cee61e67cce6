"""Fixtures shared by every test directory."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import redis

from tests.support.redis_server import redis_url_for_tests

ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture(scope="session")
def redis_base_url() -> Iterator[str]:
    """One real Redis server for the session."""
    with redis_url_for_tests() as url:
        yield url


@pytest.fixture
def redis_url(redis_base_url: str) -> Iterator[str]:
    """A flushed database of the session's Redis, for one test."""
    url = redis_base_url.rsplit("/", 1)[0] + "/0"
    client = redis.Redis.from_url(url)
    client.flushdb()
    yield url
    client.flushdb()
    client.close()


@pytest.fixture
def redis_client(redis_url: str) -> Iterator[redis.Redis]:
    client = redis.Redis.from_url(redis_url)
    yield client
    client.close()


TEST_CONFIG = """
queues:
  - name: default
    concurrency: 2
    soft_time_limit_s: 5
    time_limit_s: 8
    shutdown_grace_s: 5
  - name: emails
    concurrency: 1
    soft_time_limit_s: 5
    time_limit_s: 8
  - name: reports
    concurrency: 1
    soft_time_limit_s: 5
    time_limit_s: 8
broker:
  max_retry_backoff_s: 5
limits:
  result_ttl_s: 3600
"""


@pytest.fixture
def config_path(tmp_path: Path) -> Path:
    """A small config with short limits (tests may overwrite the file)."""
    path = tmp_path / "jobyard.yaml"
    path.write_text(TEST_CONFIG)
    return path


@pytest.fixture
def spawn(tmp_path: Path, redis_url: str, config_path: Path) -> Iterator[Any]:
    """`spawn("worker", "--queue", "default", env={...})` starts a real jobyard process."""
    from tests.support.processes import Proc, jobyard_env

    procs: list[Proc] = []

    def _spawn(*args: str, env: dict[str, str] | None = None) -> Proc:
        # Metrics ports off unless a test asks: parallel runs would fight over 9808/9809.
        defaults = {
            "JOBYARD_HEARTBEAT_DIR": str(tmp_path / "hb"),
            "JOBYARD_WORKER_METRICS_PORT": "0",
            "JOBYARD_BEAT_METRICS_PORT": "0",
        }
        full_env = jobyard_env(redis_url, config_path, **{**defaults, **(env or {})})
        proc = Proc(list(args), full_env, tmp_path / f"proc-{len(procs)}-{args[0]}.log")
        procs.append(proc)
        return proc

    yield _spawn
    for proc in procs:
        proc.stop()
