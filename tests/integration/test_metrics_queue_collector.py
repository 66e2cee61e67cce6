"""The scrape-time queue collector against a real, seeded Redis (and a dead or hung one)."""

from __future__ import annotations

import json
import signal
import time
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import pytest
import redis
from prometheus_client import CollectorRegistry, generate_latest

from jobyard.core import keys
from jobyard.core.bootstrap import Runtime
from jobyard.observability.queue_collector import QueueCollector, scrape_client
from tests.support.obs_scrape import Producer, free_port, promtool_check, samples, series, value
from tests.support.redis_server import RedisProcess

pytestmark = pytest.mark.integration

CONFIG = """
queues:
  - name: default
    soft_time_limit_s: 5
    time_limit_s: 8
    alerts:
      backlog_jobs: 50
      oldest_job_age_s: 120
      failure_ratio: 0.25
      failure_min_jobs: 5
      wait_p95_s: 30
      run_p95_ratio_of_soft_limit: 0.5
  - name: emails
    soft_time_limit_s: 20
    time_limit_s: 30
  - name: reports
schedules:
  - name: every-minute
    task: jobyard.noop
    interval_s: 60
  - name: nightly
    task: jobyard.noop
    cron: "0 3 * * *"
  - name: paused
    task: jobyard.noop
    interval_s: 10
    enabled: false
"""

T = float(int(time.time()))
"""The collector's clock: a whole second, so ages compare exactly."""


@pytest.fixture
def seeded(redis_url: str, config_path: Path, redis_client: redis.Redis) -> Iterator[Runtime]:
    config_path.write_text(CONFIG)
    producer = Producer(redis_url, config_path, job_modules="")
    # default: two jobs in the base list, one each in the step-3 and step-9 lists.
    producer.enqueue("jobyard.noop", priority=0, now=T - 100)
    producer.enqueue("jobyard.noop", priority=0, now=T - 50)
    producer.enqueue("jobyard.noop", priority=5, now=T - 300)
    producer.enqueue("jobyard.noop", priority=9, now=T - 10)
    # emails: a job enqueued 1000 s ago with a 900 s delay, released to its list by beat:
    # it has waited 100 s, not 1000.
    delayed = producer.enqueue("jobyard.noop", queue="emails", now=T - 1000, delay_s=900)
    list_key, payload = json.loads(redis_client.hget(keys.SCHEDULED_MESSAGES, delayed) or "")
    redis_client.lpush(list_key, payload)
    pipe = redis_client.pipeline()
    pipe.zadd(keys.running("default"), {"a": T - 5, "b": T - 10, "lost": T - 10_000})
    pipe.zadd(keys.workers("default"), {"w1": T - 1, "gone": T - 1000})
    pipe.zadd(keys.dead_letters("reports"), {"x": T - 60, "y": T - 30})
    pipe.set(keys.BEAT_LAST_TICK, repr(T - 2))
    pipe.set(keys.schedule_last_run("every-minute"), repr(T - 30))
    pipe.execute()
    yield producer.runtime
    producer.close()


def collect(runtime: Runtime, client: redis.Redis | None = None) -> str:
    registry = CollectorRegistry()
    registry.register(QueueCollector(runtime.settings, runtime.config, client, clock=lambda: T))
    return generate_latest(registry).decode()


def test_queue_state_is_measured_exactly(seeded: Runtime) -> None:
    parsed = samples(collect(seeded))
    assert value(parsed, "jobyard_redis_up") == 1
    assert series(parsed, "jobyard_queue_depth") == {
        frozenset({("queue", "default")}): 4,
        frozenset({("queue", "emails")}): 1,
        frozenset({("queue", "reports")}): 0,
    }
    assert series(parsed, "jobyard_queue_oldest_job_age_seconds") == {
        frozenset({("queue", "default")}): 300,
        frozenset({("queue", "emails")}): 100,
        frozenset({("queue", "reports")}): 0,
    }
    assert value(parsed, "jobyard_queue_jobs_in_progress", queue="default") == 2
    assert value(parsed, "jobyard_queue_workers", queue="default") == 1
    assert value(parsed, "jobyard_queue_workers", queue="emails") == 0
    assert value(parsed, "jobyard_queue_dead_letters", queue="reports") == 2
    assert value(parsed, "jobyard_queue_dead_letters", queue="default") == 0
    assert value(parsed, "jobyard_beat_last_tick_timestamp_seconds") == T - 2
    assert series(parsed, "jobyard_schedule_last_run_timestamp_seconds") == {
        frozenset({("schedule", "every-minute")}): T - 30
    }
    next_runs = series(parsed, "jobyard_schedule_next_run_timestamp_seconds")
    assert set(next_runs) == {
        frozenset({("schedule", "every-minute")}),
        frozenset({("schedule", "nightly")}),
    }
    assert next_runs[frozenset({("schedule", "every-minute")})] == T + 30
    nightly = datetime.fromtimestamp(next_runs[frozenset({("schedule", "nightly")})], UTC)
    assert (nightly.hour, nightly.minute, nightly.second) == (3, 0, 0)
    assert 0 < nightly.timestamp() - T <= 86_400


def test_alert_thresholds_come_from_the_config(seeded: Runtime) -> None:
    parsed = samples(collect(seeded))
    default = {
        "jobyard_queue_alert_backlog_jobs": 50,
        "jobyard_queue_alert_oldest_job_age_seconds": 120,
        "jobyard_queue_alert_failure_ratio": 0.25,
        "jobyard_queue_alert_failure_min_jobs": 5,
        "jobyard_queue_alert_wait_p95_seconds": 30,
        "jobyard_queue_alert_run_p95_ratio": 0.5,
        "jobyard_queue_soft_time_limit_seconds": 5,
    }
    for name, expected in default.items():
        assert value(parsed, name, queue="default") == expected, name
    emails = {
        "jobyard_queue_alert_backlog_jobs": 1000,
        "jobyard_queue_alert_oldest_job_age_seconds": 600,
        "jobyard_queue_alert_failure_ratio": 0.1,
        "jobyard_queue_alert_failure_min_jobs": 20,
        "jobyard_queue_alert_wait_p95_seconds": 120,
        "jobyard_queue_alert_run_p95_ratio": 0.8,
        "jobyard_queue_soft_time_limit_seconds": 20,
    }
    for name, expected in emails.items():
        assert value(parsed, name, queue="emails") == expected, name


def test_collector_output_passes_promtool(seeded: Runtime) -> None:
    result = promtool_check(collect(seeded))
    assert result.returncode == 0, result.stdout + result.stderr
    assert result.stdout + result.stderr == ""


def test_redis_down_answers_quickly_with_redis_up_zero(seeded: Runtime) -> None:
    client = scrape_client(f"redis://127.0.0.1:{free_port()}/0")
    started = time.perf_counter()
    parsed = samples(collect(seeded, client))
    assert time.perf_counter() - started < 1.0
    assert value(parsed, "jobyard_redis_up") == 0
    measured = [
        "jobyard_queue_depth",
        "jobyard_queue_oldest_job_age_seconds",
        "jobyard_queue_jobs_in_progress",
        "jobyard_queue_dead_letters",
        "jobyard_queue_workers",
        "jobyard_beat_last_tick_timestamp_seconds",
        "jobyard_schedule_last_run_timestamp_seconds",
        "jobyard_schedule_next_run_timestamp_seconds",
    ]
    for name in measured:
        assert series(parsed, name) == {}, name
    # Thresholds are configuration, not Redis: still there for the rules.
    assert value(parsed, "jobyard_queue_alert_backlog_jobs", queue="default") == 50


def test_hung_redis_costs_one_timeout_then_recovers(seeded: Runtime) -> None:
    server = RedisProcess().start()
    try:
        runtime = seeded
        client = scrape_client(server.url, timeout_s=0.5)
        assert value(samples(collect(runtime, client)), "jobyard_redis_up") == 1
        assert server.proc is not None
        server.proc.send_signal(signal.SIGSTOP)
        try:
            started = time.perf_counter()
            parsed = samples(collect(runtime, client))
            elapsed_s = time.perf_counter() - started
        finally:
            server.proc.send_signal(signal.SIGCONT)
        assert value(parsed, "jobyard_redis_up") == 0
        assert 0.4 < elapsed_s < 2.0
        assert value(samples(collect(runtime, client)), "jobyard_redis_up") == 1
    finally:
        server.stop()
