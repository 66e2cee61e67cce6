"""One trace from `POST /v1/jobs` in a real API process to the run span in a real worker.

Both processes export over OTLP/HTTP (configured only by standard `OTEL_*` variables) to
a receiver this test runs, which decodes the protobuf export requests.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import redis

from jobyard.core import keys
from tests.support.obs_scrape import OBS_JOBS, free_port
from tests.support.otlp_receiver import OtlpReceiver, ReceivedSpan
from tests.support.processes import wait_until

pytestmark = pytest.mark.integration

SERVER = 2  # opentelemetry.proto SpanKind
CONSUMER = 5


@pytest.fixture
def receiver() -> Iterator[OtlpReceiver]:
    with OtlpReceiver() as r:
        yield r


def otel_env(receiver: OtlpReceiver, delay_ms: int = 100) -> dict[str, str]:
    return {
        "OTEL_TRACES_EXPORTER": "otlp",
        "OTEL_EXPORTER_OTLP_ENDPOINT": receiver.endpoint,
        "OTEL_BSP_SCHEDULE_DELAY": str(delay_ms),
        "JOBYARD_JOB_MODULES": OBS_JOBS,
        "JOBYARD_WORKER_METRICS_PORT": "0",
    }


def start_api(spawn: Any, env: dict[str, str]) -> str:
    port = free_port()
    spawn("api", "--port", str(port), env=env)
    base = f"http://127.0.0.1:{port}"

    def healthy() -> bool:
        try:
            return httpx.get(f"{base}/healthz", timeout=1).status_code == 200
        except httpx.HTTPError:
            return False

    wait_until(healthy, timeout_s=30, interval_s=0.1)
    return base


def ancestors(span: ReceivedSpan, spans: list[ReceivedSpan]) -> list[ReceivedSpan]:
    by_id = {s.span_id: s for s in spans}
    chain = []
    current = span
    while current.parent_span_id and current.parent_span_id in by_id:
        current = by_id[current.parent_span_id]
        chain.append(current)
    return chain


def test_worker_run_span_continues_the_api_request_trace(
    spawn: Any, receiver: OtlpReceiver, redis_client: redis.Redis
) -> None:
    env = otel_env(receiver)
    base = start_api(spawn, env)
    worker = spawn("worker", "--queue", "default", env=env)
    worker.wait_for_log(" ready.")
    created = httpx.post(f"{base}/v1/jobs", json={"task": "obs.touch"}, timeout=5)
    assert created.status_code == 201, created.text
    job = created.json()

    def run_span() -> ReceivedSpan | None:
        return next(
            (s for s in receiver.snapshot() if s.name == "run/obs.touch" and s.kind == CONSUMER),
            None,
        )

    run = wait_until(run_span, timeout_s=30, interval_s=0.1)
    server = wait_until(
        lambda: next(
            (
                s
                for s in receiver.snapshot()
                if s.kind == SERVER and s.name == "POST /v1/jobs" and s.trace_id == run.trace_id
            ),
            None,
        ),
        timeout_s=10,
        interval_s=0.1,
    )
    assert server.service == "jobyard-api"
    assert run.service == "jobyard-worker"
    chain = ancestors(run, receiver.snapshot())
    assert server in chain, [(s.service, s.name) for s in chain]
    assert not server.parent_span_id  # the request span is the trace's root
    # The record and the message carry the same trace.
    assert job["trace_id"] == run.trace_id
    assert redis_client.hget(keys.job(job["id"]), "trace_id") == run.trace_id.encode()
    # The job's own Redis commands are traced, inside its run span; jobyard's bookkeeping
    # (kombu's polls and acks, the record writes) is not.
    wait_until(
        lambda: any(s.name == "INCRBY" for s in receiver.snapshot()), timeout_s=10, interval_s=0.1
    )
    worker_redis = [
        s for s in receiver.snapshot() if s.service == "jobyard-worker" and s.name != run.name
    ]
    assert [(s.name, s.trace_id, s.parent_span_id) for s in worker_redis] == [
        ("INCRBY", run.trace_id, run.span_id)
    ]
    # The worker's job events carry the trace id.
    wait_until(lambda: "job succeeded" in worker.log(), timeout_s=10)
    events = [json.loads(line) for line in worker.log().splitlines() if line.startswith("{")]
    mine = [e for e in events if e.get("job_id") == job["id"]]
    assert [e["event"] for e in mine] == ["job succeeded"]  # `job started` is DEBUG
    assert all(e["trace_id"] == run.trace_id for e in mine)


def test_recycled_children_flush_their_spans(
    spawn: Any, receiver: OtlpReceiver, config_path: Path
) -> None:
    config_path.write_text(
        config_path.read_text().replace(
            "    shutdown_grace_s: 5\n", "    shutdown_grace_s: 5\n    max_tasks_per_child: 1\n", 1
        )
    )
    # Batches would wait a minute: only the flush at child exit can deliver them in time.
    env = otel_env(receiver, delay_ms=60_000)
    base = start_api(spawn, {**env, "OTEL_BSP_SCHEDULE_DELAY": "100"})
    worker = spawn("worker", "--queue", "default", env=env)
    worker.wait_for_log(" ready.")
    ids = []
    for _ in range(3):
        created = httpx.post(f"{base}/v1/jobs", json={"task": "obs.touch"}, timeout=5)
        assert created.status_code == 201
        ids.append(created.json()["trace_id"])

    def run_traces() -> set[str]:
        return {s.trace_id for s in receiver.snapshot() if s.name == "run/obs.touch"}

    wait_until(lambda: run_traces() == set(ids), timeout_s=30, interval_s=0.1)
    assert worker.popen.poll() is None


def test_tracing_is_off_without_an_exporter(spawn: Any, redis_client: redis.Redis) -> None:
    base = start_api(spawn, {"JOBYARD_JOB_MODULES": OBS_JOBS})
    created = httpx.post(f"{base}/v1/jobs", json={"task": "obs.touch"}, timeout=5)
    assert created.json()["trace_id"] is None
    assert redis_client.hget(keys.job(created.json()["id"]), "trace_id") is None
    (raw,) = redis_client.lrange("default", 0, -1)
    assert "traceparent" not in json.loads(raw)["headers"]
