"""A real API process's /metrics: request metrics, enqueued jobs, promtool, scrape cost."""

from __future__ import annotations

import statistics
import time
from pathlib import Path
from typing import Any

import httpx
import pytest
import redis

from jobyard import __version__
from tests.support.obs_scrape import (
    Producer,
    free_port,
    promtool_check,
    samples,
    scrape,
    series,
    value,
)
from tests.support.processes import wait_until

pytestmark = pytest.mark.integration

BACKLOG = 100_000


def start_api(spawn: Any, **env: str) -> str:
    port = free_port()
    api = spawn("api", "--port", str(port), env=env)
    base = f"http://127.0.0.1:{port}"
    wait_until(lambda: _healthy(base), timeout_s=30, interval_s=0.1)
    assert api.popen.poll() is None
    return base


def _healthy(base: str) -> bool:
    try:
        return httpx.get(f"{base}/healthz", timeout=1).status_code == 200
    except httpx.HTTPError:
        return False


def test_requests_and_enqueued_jobs_are_counted_by_route_template(spawn: Any) -> None:
    base = start_api(spawn)
    created = httpx.post(f"{base}/v1/jobs", json={"task": "jobyard.noop"}, timeout=5)
    assert created.status_code == 201, created.text
    job_id = created.json()["id"]
    for _ in range(2):
        assert httpx.get(f"{base}/v1/jobs/{job_id}", timeout=5).status_code == 200
    assert httpx.get(f"{base}/v1/no-such-thing", timeout=5).status_code == 404
    batch = httpx.post(
        f"{base}/v1/jobs:batch",
        json={"jobs": [{"task": "jobyard.noop"}, {"task": "jobyard.noop"}]},
        timeout=5,
    )
    assert batch.status_code == 201, batch.text
    parsed = samples(scrape(f"{base}/metrics"))
    requests = {
        (dict(k)["route"], dict(k)["method"], dict(k)["status"]): v
        for k, v in series(parsed, "jobyard_http_requests_total").items()
    }
    assert requests[("/v1/jobs", "POST", "201")] == 1
    assert requests[("/v1/jobs/{job_id}", "GET", "200")] == 2
    assert requests[("unmatched", "GET", "404")] == 1
    assert requests[("/v1/jobs:batch", "POST", "201")] == 1
    # Every route label is a template or `unmatched`: never a job id.
    assert not any(job_id in route for route, _, _ in requests)
    assert (
        value(
            parsed,
            "jobyard_http_request_duration_seconds_count",
            route="/v1/jobs/{job_id}",
            method="GET",
        )
        == 2
    )
    assert value(parsed, "jobyard_jobs_enqueued_total", queue="default", task="jobyard.noop") == 3
    assert value(parsed, "jobyard_build_info", component="api", version=__version__) == 1
    assert value(parsed, "jobyard_queue_depth", queue="default") == 3
    assert value(parsed, "jobyard_redis_up") == 1


def test_api_scrape_passes_promtool(spawn: Any) -> None:
    base = start_api(spawn)
    assert httpx.post(f"{base}/v1/jobs", json={"task": "jobyard.noop"}, timeout=5).is_success
    text = scrape(f"{base}/metrics")
    assert "jobyard_queue_depth{" in text and "jobyard_http_requests_total{" in text
    result = promtool_check(text)
    assert result.returncode == 0, result.stdout + result.stderr
    assert result.stdout + result.stderr == ""


def _median_scrape_ms(url: str, n: int = 25) -> float:
    timings = []
    with httpx.Client(timeout=5) as client:
        client.get(url)  # warm up the connection and the lazy registry
        for _ in range(n):
            started = time.perf_counter()
            assert client.get(url).status_code == 200
            timings.append((time.perf_counter() - started) * 1000)
    return statistics.median(timings)


def test_scrape_cost_does_not_grow_with_the_backlog(
    spawn: Any, redis_url: str, config_path: Path, redis_client: redis.Redis
) -> None:
    base = start_api(spawn)
    url = f"{base}/metrics"
    empty_ms = _median_scrape_ms(url)
    producer = Producer(redis_url, config_path, job_modules="")
    producer.enqueue("jobyard.noop", now=time.time() - 42)
    (payload,) = redis_client.lrange("default", 0, 0)
    redis_client.delete("default")
    pipe = redis_client.pipeline(transaction=False)
    for _ in range(BACKLOG // 10_000):
        pipe.lpush("default", *([payload] * 10_000))
    pipe.execute()
    producer.close()
    assert redis_client.llen("default") == BACKLOG
    backlog_ms = _median_scrape_ms(url)
    parsed = samples(scrape(url))
    assert value(parsed, "jobyard_queue_depth", queue="default") == BACKLOG
    age = value(parsed, "jobyard_queue_oldest_job_age_seconds", queue="default")
    assert age is not None and 42 <= age < 42 + 60
    print(f"\nmedian /metrics scrape: {empty_ms:.1f} ms empty, {backlog_ms:.1f} ms with {BACKLOG}")
    assert backlog_ms < 250


def test_api_metrics_answer_when_redis_is_down(spawn: Any) -> None:
    dead = f"redis://127.0.0.1:{free_port()}/0"
    port = free_port()
    spawn("api", "--port", str(port), env={"JOBYARD_REDIS_URL": dead})
    base = f"http://127.0.0.1:{port}"

    def metrics_answer() -> httpx.Response | None:
        try:
            return httpx.get(f"{base}/metrics", timeout=5)
        except httpx.HTTPError:
            return None

    response = wait_until(metrics_answer, timeout_s=30, interval_s=0.1)
    assert response.status_code == 200
    started = time.perf_counter()
    parsed = samples(scrape(f"{base}/metrics"))
    assert time.perf_counter() - started < 2
    assert value(parsed, "jobyard_redis_up") == 0
    assert series(parsed, "jobyard_queue_depth") == {}
