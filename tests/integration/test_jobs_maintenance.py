"""maintenance.cleanup against a seeded real Redis: exact counts and exactly what remains."""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import redis

from jobyard.core import keys
from jobyard.core.records import JobState
from jobyard.jobs.maintenance import CleanupArgs, cleanup
from tests.support.jobs import Jobs, start_worker

pytestmark = pytest.mark.integration

CONFIG = """
queues:
  - name: default
    soft_time_limit_s: 5
    time_limit_s: 8
  - name: emails
    soft_time_limit_s: 5
    time_limit_s: 8
  - name: reports
    soft_time_limit_s: 20
    time_limit_s: 30
broker:
  max_retry_backoff_s: 5
limits:
  result_ttl_s: 3600
  dead_letter_ttl_s: 7200
"""
# Stale thresholds with this config and the default 5 s heartbeat: workers 50 s;
# running entries 68 s (default, emails) and 90 s (reports).


@pytest.fixture
def jobs(redis_url: str, config_path: Path) -> Iterator[Jobs]:
    config_path.write_text(CONFIG)
    j = Jobs(redis_url, config_path)
    yield j
    j.close()


def add_job(
    r: redis.Redis, job_id: str, queue: str, enqueued_ago_s: float, *, record: bool, now: float
) -> None:
    t = now - enqueued_ago_s
    r.zadd(keys.RECENT, {job_id: t})
    r.zadd(keys.recent(queue), {job_id: t})
    if record:
        r.hset(keys.job(job_id), mapping={"state": "succeeded", "queue": queue})


def add_dead(
    r: redis.Redis, job_id: str, queue: str, enqueued_ago_s: float, died_ago_s: float, now: float
) -> None:
    add_job(r, job_id, queue, enqueued_ago_s, record=True, now=now)
    r.hset(keys.job(job_id), "state", "dead")
    r.zadd(keys.dead_letters(queue), {job_id: now - died_ago_s})


def seed(r: redis.Redis) -> float:
    now = time.time()
    add_job(r, "live-1", "default", 10, record=True, now=now)
    add_job(r, "live-2", "emails", 3500, record=True, now=now)
    add_job(r, "old-1", "default", 4000, record=True, now=now)  # past result_ttl_s, record kept
    add_job(r, "old-2", "reports", 5000, record=False, now=now)
    add_job(r, "gone-1", "default", 50, record=False, now=now)  # record purged early
    add_job(r, "gone-2", "emails", 20, record=False, now=now)
    add_dead(r, "dead-old-1", "default", 8100, 8000, now)
    add_dead(r, "dead-old-2", "reports", 7300, 7250, now)
    add_dead(r, "dead-new", "emails", 150, 100, now)
    r.zadd(keys.workers("default"), {"default@live": now - 5, "default@gone": now - 60})
    r.zadd(keys.workers("emails"), {"emails@gone": now - 1000})
    r.zadd(
        keys.running("default"), {"run-live": now - 5, "run-edge": now - 60, "run-stale": now - 69}
    )
    r.zadd(keys.running("reports"), {"rep-live": now - 80, "rep-stale": now - 500})
    return now


def members(r: redis.Redis, key: str) -> list[str]:
    return sorted(m.decode() for m in r.zrange(key, 0, -1))


def snapshot(r: redis.Redis) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for raw in r.scan_iter(count=1000):
        key = raw.decode()
        kind = r.type(key).decode()
        out[key] = r.zrange(key, 0, -1, withscores=True) if kind == "zset" else r.hgetall(key)
    return out


EXPECTED = {"dead_letters": 2, "recent_expired": 4, "recent_missing": 4, "workers": 2, "running": 2}


def test_dry_run_counts_exactly_what_a_real_run_removes(jobs: Jobs) -> None:
    r = jobs.client
    seed(r)
    before = snapshot(r)
    dry = cleanup(jobs.context("maintenance.cleanup"), CleanupArgs(dry_run=True))
    assert dry == {"dry_run": True, **EXPECTED}
    assert snapshot(r) == before
    real = cleanup(jobs.context("maintenance.cleanup"), CleanupArgs())
    assert real == {"dry_run": False, **EXPECTED}


def test_cleanup_removes_exactly_the_stale_entries(jobs: Jobs) -> None:
    r = jobs.client
    seed(r)
    result = cleanup(jobs.context("maintenance.cleanup"), CleanupArgs(batch_size=1))
    assert result == {"dry_run": False, **EXPECTED}
    assert members(r, keys.RECENT) == ["dead-new", "live-1", "live-2"]
    assert members(r, keys.recent("default")) == ["live-1"]
    assert members(r, keys.recent("emails")) == ["dead-new", "live-2"]
    assert members(r, keys.recent("reports")) == []
    assert members(r, keys.dead_letters("default")) == []
    assert members(r, keys.dead_letters("reports")) == []
    assert members(r, keys.dead_letters("emails")) == ["dead-new"]
    assert r.exists(keys.job("dead-old-1"), keys.job("dead-old-2")) == 0
    assert r.hget(keys.job("dead-new"), "state") == b"dead"
    assert r.exists(keys.job("live-1"), keys.job("live-2"), keys.job("old-1")) == 3
    assert members(r, keys.workers("default")) == ["default@live"]
    assert members(r, keys.workers("emails")) == []
    assert members(r, keys.running("default")) == ["run-edge", "run-live"]
    assert members(r, keys.running("reports")) == ["rep-live"]
    again = cleanup(jobs.context("maintenance.cleanup"), CleanupArgs())
    assert again == {
        "dry_run": False,
        "dead_letters": 0,
        "recent_expired": 0,
        "recent_missing": 0,
        "workers": 0,
        "running": 0,
    }


def test_large_indexes_are_worked_in_batches_and_checks_are_bounded(jobs: Jobs) -> None:
    r = jobs.client
    now = time.time()
    r.zadd(keys.RECENT, {f"expired-{i}": now - 4000 - i for i in range(1234)})
    r.zadd(keys.RECENT, {f"missing-{i}": now - 100 + i for i in range(50)})
    r.zadd(keys.RECENT, {"kept": now})
    r.hset(keys.job("kept"), "state", "queued")
    args = CleanupArgs(batch_size=100, max_checked=30)
    first = cleanup(jobs.context("maintenance.cleanup"), args)
    assert (first["recent_expired"], first["recent_missing"]) == (1234, 30)
    # The oldest 30 were checked first; the other 20 (and `kept`) wait for the next run.
    assert members(r, keys.RECENT) == sorted(["kept", *(f"missing-{i}" for i in range(30, 50))])
    second = cleanup(jobs.context("maintenance.cleanup"), args)
    assert (second["recent_expired"], second["recent_missing"]) == (0, 20)
    assert members(r, keys.RECENT) == ["kept"]


def test_worker_runs_cleanup_with_the_configured_limits(spawn: Any, jobs: Jobs) -> None:
    r = jobs.client
    now = time.time()
    add_job(r, "old-1", "emails", 4000, record=False, now=now)
    r.zadd(keys.workers("reports"), {"reports@gone": now - 600})
    start_worker(spawn, "default")
    job_id = jobs.enqueue("maintenance.cleanup", {})
    rec = jobs.wait(job_id)
    assert rec.state is JobState.SUCCEEDED, rec.error
    assert rec.result == {
        "dry_run": False,
        "dead_letters": 0,
        "recent_expired": 2,
        "recent_missing": 0,
        "workers": 1,
        "running": 0,
    }
    assert members(r, keys.RECENT) == [job_id]
    assert members(r, keys.recent("emails")) == []
