"""A real worker's log: JSON lines with the job lifecycle, or readable console lines."""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import redis

from jobyard.core import keys
from tests.support.obs_scrape import OBS_JOBS, Producer
from tests.support.processes import wait_until

pytestmark = pytest.mark.integration

RFC3339_UTC = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z$")
TERMINAL = {b"succeeded", b"failed", b"dead"}


@pytest.fixture
def producer(redis_url: str, config_path: Path) -> Iterator[Producer]:
    p = Producer(redis_url, config_path)
    yield p
    p.close()


def run_jobs(
    spawn: Any, producer: Producer, client: redis.Redis, tasks: list[str], **env: str
) -> tuple[Any, dict[str, str]]:
    worker = spawn(
        "worker",
        "--queue",
        "default",
        env={"JOBYARD_JOB_MODULES": OBS_JOBS, "JOBYARD_WORKER_METRICS_PORT": "0", **env},
    )
    worker.wait_for_log(" ready.")
    ids = {task: producer.enqueue(task) for task in tasks}
    wait_until(
        lambda: all(client.hget(keys.job(i), "state") in TERMINAL for i in ids.values()),
        timeout_s=60,
    )
    return worker, ids


def test_every_line_is_json_with_the_job_lifecycle(
    spawn: Any, producer: Producer, redis_client: redis.Redis
) -> None:
    worker, ids = run_jobs(
        spawn,
        producer,
        redis_client,
        ["obs.ok", "obs.flaky", "obs.doomed", "obs.broken"],
        JOBYARD_LOG_LEVEL="DEBUG",
    )
    wait_until(lambda: worker.log().count('"event":"job ') >= 10, timeout_s=10)
    worker.stop()
    lines = [line for line in worker.log().splitlines() if line.strip()]
    events = [json.loads(line) for line in lines]  # every line is one JSON object
    for e in events:
        assert RFC3339_UTC.match(e["ts"]), e
        assert e["level"] in {"debug", "info", "warning", "error", "critical"}
        assert e["logger"] and e["component"] == "worker"
        assert isinstance(e["event"], str)

    def of(task: str) -> list[tuple[str, dict[str, Any]]]:
        return [(e["event"], e) for e in events if e.get("job_id") == ids[task]]

    ok = of("obs.ok")
    assert [name for name, _ in ok] == ["job started", "job succeeded"]
    started, succeeded = ok[0][1], ok[1][1]
    for e in (started, succeeded):
        assert (e["task"], e["queue"], e["attempt"]) == ("obs.ok", "default", 1)
        assert e["logger"] == "jobyard.jobs"
    assert started["level"] == "debug"
    assert isinstance(succeeded["duration_s"], float) and 0 <= succeeded["duration_s"] < 5

    flaky = of("obs.flaky")
    assert [name for name, _ in flaky] == [
        "job started",
        "job retrying",
        "job started",
        "job succeeded",
    ]
    retrying = flaky[1][1]
    assert retrying["level"] == "warning"
    assert retrying["error"] == "RetryableError: first attempt fails"
    assert 0 <= retrying["retry_in_s"] <= 0.1
    assert [e["attempt"] for _, e in flaky] == [1, 1, 2, 2]

    doomed = of("obs.doomed")
    assert [name for name, _ in doomed] == [
        "job started",
        "job retrying",
        "job started",
        "job dead-lettered",
    ]
    assert doomed[-1][1]["error"] == "RetryableError: doomed attempt 2"
    assert doomed[-1][1]["level"] == "error"

    broken = of("obs.broken")
    assert [name for name, _ in broken] == ["job started", "job failed"]
    assert broken[-1][1]["error"] == "PermanentError: broken on purpose"
    assert "duration_s" in broken[-1][1]

    # Celery's own per-task lines would repeat these events: none is left.
    assert not any(re.match(r"Task obs\.\w+\[", e["event"]) for e in events)
    # Tracing is off: no trace id anywhere.
    assert not any("trace_id" in e for e in events)


def test_a_hard_time_limit_is_logged_once(
    spawn: Any, producer: Producer, redis_client: redis.Redis
) -> None:
    worker, ids = run_jobs(spawn, producer, redis_client, ["obs.stubborn"])
    wait_until(lambda: '"event":"job failed"' in worker.log(), timeout_s=10)
    worker.stop()
    events = [json.loads(line) for line in worker.log().splitlines() if line.strip()]
    failed = [e for e in events if e["event"] == "job failed"]
    assert len(failed) == 1
    assert failed[0]["job_id"] == ids["obs.stubborn"]
    assert failed[0]["queue"] == "default"
    assert failed[0]["error"] == (
        "TimeLimitExceeded: job exceeded its hard time limit of 1 s and was killed"
    )


def test_console_format_is_readable(
    spawn: Any, producer: Producer, redis_client: redis.Redis
) -> None:
    worker, ids = run_jobs(spawn, producer, redis_client, ["obs.ok"], JOBYARD_LOG_FORMAT="console")
    wait_until(lambda: "job succeeded" in worker.log(), timeout_s=10)
    worker.stop()
    log = worker.log()
    assert not any(line.startswith("{") for line in log.splitlines())
    # At INFO (the default) a job that succeeds logs one line: `job started` is DEBUG.
    assert "job started" not in log
    (line,) = [ln for ln in log.splitlines() if "job succeeded" in ln]
    assert re.match(
        rf"^\d\d:\d\d:\d\d\.\d{{3}} INFO +jobyard\.jobs +job succeeded  job_id={ids['obs.ok']} "
        r"task=obs\.ok queue=default attempt=1 duration_s=\d+\.\d{3}$",
        line,
    ), line
