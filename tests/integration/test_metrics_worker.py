"""A real prefork worker's /metrics: exact outcome counts, recycled children, promtool."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import redis

from jobyard import __version__
from jobyard.core import keys
from tests.support.obs_scrape import (
    OBS_JOBS,
    Producer,
    free_port,
    promtool_check,
    samples,
    scrape,
    series,
    try_scrape,
    value,
)
from tests.support.processes import wait_until

pytestmark = pytest.mark.integration

TERMINAL = {b"succeeded", b"failed", b"dead", b"cancelled"}


@pytest.fixture
def producer(redis_url: str, config_path: Path) -> Iterator[Producer]:
    p = Producer(redis_url, config_path)
    yield p
    p.close()


def start_worker(spawn: Any, port: int, **env: str) -> Any:
    worker = spawn(
        "worker",
        "--queue",
        "default",
        env={"JOBYARD_JOB_MODULES": OBS_JOBS, "JOBYARD_WORKER_METRICS_PORT": str(port), **env},
    )
    worker.wait_for_log(" ready.")
    return worker


def wait_terminal(client: redis.Redis, ids: list[str], timeout_s: float = 60) -> None:
    def done() -> bool:
        return all(client.hget(keys.job(i), "state") in TERMINAL for i in ids)

    wait_until(done, timeout_s=timeout_s)


def finished(parsed: Any, task: str, outcome: str) -> float | None:
    return value(parsed, "jobyard_jobs_finished_total", queue="default", task=task, outcome=outcome)


def test_outcomes_durations_and_waits_are_counted_exactly(
    spawn: Any, producer: Producer, redis_client: redis.Redis
) -> None:
    # Cancelled while queued: enqueued and cancelled before any worker runs.
    cancelled = producer.enqueue("obs.ok")
    redis_client.hset(keys.job(cancelled), "state", "cancelled")
    ids = [cancelled]
    ids += [producer.enqueue("obs.ok", args={"sleep_s": 0.05}) for _ in range(3)]
    ids += [producer.enqueue(t) for t in ("obs.flaky", "obs.doomed", "obs.broken", "obs.stubborn")]
    port = free_port()
    worker = start_worker(spawn, port)
    url = f"http://127.0.0.1:{port}/metrics"
    wait_terminal(redis_client, ids)

    def all_counted() -> Any:
        parsed = samples(scrape(url))
        total = sum(series(parsed, "jobyard_jobs_finished_total").values())
        return parsed if total == 10 else None

    parsed = wait_until(all_counted, timeout_s=20, interval_s=0.2)
    expected = {
        ("obs.ok", "succeeded"): 3,
        ("obs.ok", "cancelled"): 1,
        ("obs.flaky", "retried"): 1,
        ("obs.flaky", "succeeded"): 1,
        ("obs.doomed", "retried"): 1,
        ("obs.doomed", "dead"): 1,
        ("obs.broken", "failed"): 1,
        ("obs.stubborn", "failed"): 1,
    }
    got = {
        (dict(labels)["task"], dict(labels)["outcome"]): v
        for labels, v in series(parsed, "jobyard_jobs_finished_total").items()
        if v
    }
    assert got == expected
    # Every outcome of every job whose default queue is `default` exists from the start
    # (at 0 until it happens), so rate() sees the first increase.
    zeros = {
        (dict(labels)["task"], dict(labels)["outcome"])
        for labels, v in series(parsed, "jobyard_jobs_finished_total").items()
        if v == 0
    }
    assert ("jobyard.noop", "dead") in zeros and ("obs.ok", "failed") in zeros
    runs = {"obs.ok": 3, "obs.flaky": 2, "obs.doomed": 2, "obs.broken": 1, "obs.stubborn": 1}
    for task, n in runs.items():
        assert (
            value(parsed, "jobyard_job_run_duration_seconds_count", queue="default", task=task) == n
        )
        assert (
            value(parsed, "jobyard_job_queue_wait_seconds_count", queue="default", task=task) == n
        )
    # The hard-killed run counts its time limit (1 s): in the 1 s bucket, not the 0.5 s one.
    stubborn = {"queue": "default", "task": "obs.stubborn"}
    assert value(parsed, "jobyard_job_run_duration_seconds_bucket", le="0.5", **stubborn) == 0
    assert value(parsed, "jobyard_job_run_duration_seconds_bucket", le="1.0", **stubborn) == 1
    assert value(parsed, "jobyard_job_run_duration_seconds_sum", **stubborn) == 1.0

    # Nothing is left running, not even the run of the killed child (once it is gone).
    def running() -> dict[Any, float]:
        return series(samples(scrape(url)), "jobyard_jobs_running")

    # (the killed child's series leave with its file; the others stay, at 0)
    wait_until(lambda: set(running().values()) == {0.0}, timeout_s=10, interval_s=0.1)
    assert value(parsed, "jobyard_worker_info", queue="default", version=__version__) == 1
    assert value(parsed, "jobyard_build_info", component="worker", version=__version__) == 1
    worker.stop()


def test_running_gauge_counts_jobs_in_progress(
    spawn: Any, producer: Producer, redis_client: redis.Redis
) -> None:
    port = free_port()
    start_worker(spawn, port)
    url = f"http://127.0.0.1:{port}/metrics"
    ids = [producer.enqueue("obs.ok", args={"sleep_s": 2}) for _ in range(2)]

    def running() -> float | None:
        return value(samples(scrape(url)), "jobyard_jobs_running", queue="default", task="obs.ok")

    wait_until(lambda: running() == 2, timeout_s=20, interval_s=0.1)
    wait_terminal(redis_client, ids)
    wait_until(lambda: running() == 0, timeout_s=10, interval_s=0.1)


def test_queue_wait_starts_when_a_delayed_job_falls_due(
    spawn: Any, producer: Producer, redis_client: redis.Redis
) -> None:
    # Enqueued 600 s ago with a 595 s delay: due 5 s ago. Beat's promotion is simulated by
    # moving the stored message to its list.
    job_id = producer.enqueue("obs.ok", now=time.time() - 600, delay_s=595)
    list_key, payload = json.loads(redis_client.hget(keys.SCHEDULED_MESSAGES, job_id) or "")
    redis_client.lpush(list_key, payload)
    redis_client.hset(keys.job(job_id), "state", "queued")
    port = free_port()
    start_worker(spawn, port)
    wait_terminal(redis_client, [job_id])
    url = f"http://127.0.0.1:{port}/metrics"
    labels = {"queue": "default", "task": "obs.ok"}

    def waited() -> Any:
        parsed = samples(scrape(url))
        if value(parsed, "jobyard_job_queue_wait_seconds_count", **labels) != 1:
            return None
        return value(parsed, "jobyard_job_queue_wait_seconds_sum", **labels)

    wait_s = wait_until(waited, timeout_s=10, interval_s=0.1)
    assert 5 <= wait_s < 60  # from the due time, not from the enqueue 600 s ago


def test_recycled_children_lose_no_counts_and_their_files_are_folded(
    spawn: Any, producer: Producer, redis_client: redis.Redis, config_path: Path, tmp_path: Path
) -> None:
    config_path.write_text(
        config_path.read_text().replace(
            "    shutdown_grace_s: 5\n", "    shutdown_grace_s: 5\n    max_tasks_per_child: 1\n", 1
        )
    )
    port = free_port()
    worker = start_worker(spawn, port)
    url = f"http://127.0.0.1:{port}/metrics"
    n = 4
    ids = [producer.enqueue("obs.ok") for _ in range(n)]
    wait_terminal(redis_client, ids)

    def counted() -> Any:
        parsed = samples(scrape(url))
        return parsed if finished(parsed, "obs.ok", "succeeded") == n else None

    parsed = wait_until(counted, timeout_s=20, interval_s=0.2)
    assert (
        value(parsed, "jobyard_job_run_duration_seconds_count", queue="default", task="obs.ok") == n
    )
    # Each child ran one job and exited: 4 children came and went, yet the directory
    # holds only the live processes' files plus one archive per type.
    (metrics_dir,) = (tmp_path / "hb" / "metrics").iterdir()
    assert metrics_dir.name == f"default-{worker.pid}"

    def counter_files() -> list[str]:
        scrape(url)  # each scrape folds the files of exited children
        return sorted(p.name for p in metrics_dir.glob("counter_*.db"))

    # archive + at most the 2 live children (a just-exited one is folded at a next scrape)
    wait_until(lambda: len(counter_files()) <= 1 + 2, timeout_s=10, interval_s=0.2)
    assert "counter_archive.db" in counter_files()
    # Scraping again after more recycling still adds up (archive values are not re-added).
    more = [producer.enqueue("obs.ok") for _ in range(2)]
    wait_terminal(redis_client, more)
    wait_until(
        lambda: finished(samples(scrape(url)), "obs.ok", "succeeded") == n + 2,
        timeout_s=20,
        interval_s=0.2,
    )
    worker.stop()
    assert not metrics_dir.exists()


def test_worker_scrape_passes_promtool(
    spawn: Any, producer: Producer, redis_client: redis.Redis
) -> None:
    port = free_port()
    start_worker(spawn, port)
    ids = [producer.enqueue(t) for t in ("obs.ok", "obs.flaky", "obs.broken")]
    wait_terminal(redis_client, ids)
    text = scrape(f"http://127.0.0.1:{port}/metrics")
    assert "jobyard_jobs_finished_total{" in text
    result = promtool_check(text)
    assert result.returncode == 0, result.stdout + result.stderr
    assert result.stdout + result.stderr == ""


def test_metrics_port_zero_serves_nothing(spawn: Any, config_path: Path) -> None:
    port = free_port()
    worker = spawn(
        "worker",
        "--queue",
        "default",
        env={"JOBYARD_JOB_MODULES": OBS_JOBS, "JOBYARD_WORKER_METRICS_PORT": "0"},
    )
    worker.wait_for_log(" ready.")
    assert try_scrape(f"http://127.0.0.1:{port}/metrics") is None


def test_a_taken_metrics_port_stops_the_worker_with_a_clear_error(spawn: Any) -> None:
    import socket

    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        worker = spawn(
            "worker",
            "--queue",
            "default",
            env={
                "JOBYARD_WORKER_METRICS_PORT": str(port),
                "JOBYARD_METRICS_HOST": "127.0.0.1",
            },
        )
        assert worker.popen.wait(timeout=30) == 2
    assert "JOBYARD_WORKER_METRICS_PORT: cannot serve /metrics on 127.0.0.1:" in worker.log()
