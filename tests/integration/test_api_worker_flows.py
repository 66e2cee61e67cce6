"""The worker behaviours end to end through the API, with real worker processes."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import anyio
import httpx
import pytest
import redis

from jobyard.core import keys
from tests.conftest import TEST_CONFIG
from tests.integration.conftest import (
    WORKER_ENV,
    WORKER_READY,
    api_client,
    eventually,
    job_in_state,
    job_until,
    make_runtime,
)
from tests.support.testjobs import flaky_counter_key

pytestmark = [pytest.mark.integration, pytest.mark.anyio]


def _lines(path: Path) -> list[str]:
    return path.read_text().splitlines() if path.exists() else []


async def _enqueue(api: httpx.AsyncClient, task: str, **body: Any) -> dict[str, Any]:
    r = await api.post("/v1/jobs", json={"task": task, **body})
    assert r.status_code == 201, r.text
    job: dict[str, Any] = r.json()
    return job


async def test_retry_then_success(api: httpx.AsyncClient, worker: Any) -> None:
    job = await _enqueue(api, "tests.flaky", args={"failures": 2})
    done = await job_in_state(api, job["id"], "succeeded", "failed", "dead")
    assert done["state"] == "succeeded"
    assert done["attempts"] == 3
    assert done["result"] == {"runs": 3, "attempt": 3}
    assert done["error"] is None
    assert done["finished_at"] >= done["started_at"] >= done["enqueued_at"]


async def test_dead_letter_retried_from_the_api_succeeds(
    api: httpx.AsyncClient, worker: Any, redis_client: redis.Redis
) -> None:
    job = await _enqueue(api, "tests.flaky", args={"failures": 3})
    dead = await job_in_state(api, job["id"], "succeeded", "failed", "dead")
    assert dead["state"] == "dead"
    assert dead["attempts"] == 3
    assert dead["error"] == {"type": "RetryableError", "message": "flaky failure 3 of 3"}

    listed = (await api.get("/v1/dead-letters")).json()["dead_letters"]
    assert [d["id"] for d in listed] == [job["id"]]
    by_queue = (await api.get("/v1/dead-letters", params={"queue": "default"})).json()
    assert [d["id"] for d in by_queue["dead_letters"]] == [job["id"]]
    other = (await api.get("/v1/dead-letters", params={"queue": "emails"})).json()
    assert other == {"dead_letters": []}

    r = await api.post(f"/v1/dead-letters/{job['id']}/retry")
    assert r.status_code == 200, r.text
    retried = r.json()
    assert retried["id"] == job["id"]
    assert retried["state"] in ("queued", "started", "succeeded")
    if retried["state"] == "queued":
        assert retried["attempts"] == 0
        assert retried["error"] == {"type": "RetryableError", "message": "flaky failure 3 of 3"}
    assert redis_client.zcard(keys.dead_letters("default")) == 0

    done = await job_in_state(api, job["id"], "succeeded", "failed", "dead")
    assert done["state"] == "succeeded"
    assert done["attempts"] == 1
    assert done["result"] == {"runs": 4, "attempt": 1}
    assert done["error"] is None
    assert (await api.get("/v1/dead-letters")).json() == {"dead_letters": []}
    again = await api.post(f"/v1/dead-letters/{job['id']}/retry")
    assert again.status_code == 409
    assert again.json()["detail"] == f"job '{job['id']}' is succeeded, not dead"


async def test_bulk_retry_of_a_queue_runs_every_dead_job(
    api: httpx.AsyncClient, worker: Any
) -> None:
    jobs = [await _enqueue(api, "tests.flaky", args={"failures": 3}) for _ in range(2)]
    for job in jobs:
        assert (await job_in_state(api, job["id"], "dead", "succeeded"))["state"] == "dead"
    r = await api.post("/v1/dead-letters:retry", params={"queue": "default"})
    assert r.status_code == 200
    assert r.json() == {"retried": 2, "skipped": 0}
    for job in jobs:
        done = await job_in_state(api, job["id"], "succeeded", "dead", "failed")
        assert done["state"] == "succeeded"
        assert done["result"] == {"runs": 4, "attempt": 1}


async def test_soft_time_limit_fails_the_job_with_a_clear_error(
    spawn: Any, redis_url: str, config_path: Path
) -> None:
    config_path.write_text(
        TEST_CONFIG.replace(
            "soft_time_limit_s: 5\n    time_limit_s: 8\n    shutdown",
            "soft_time_limit_s: 1\n    time_limit_s: 3\n    shutdown",
            1,
        )
    )
    rt = make_runtime(redis_url, config_path)
    assert rt.config.queue("default").soft_time_limit_s == 1
    proc = spawn("worker", "--queue", "default", env=WORKER_ENV)
    proc.wait_for_log(WORKER_READY, timeout_s=60)
    async with api_client(rt) as api:
        job = await _enqueue(api, "tests.sleep", args={"seconds": 10})
        done = await job_in_state(api, job["id"], "succeeded", "failed", "dead")
    assert done["state"] == "failed"
    assert done["error"] == {
        "type": "JobTimeLimitError",
        "message": "job exceeded its soft time limit of 1 s",
    }
    assert done["attempts"] == 1
    assert done["finished_at"] - done["started_at"] < 3


async def test_cancelled_queued_job_never_runs(
    api: httpx.AsyncClient, spawn: Any, tmp_path: Path
) -> None:
    effects = tmp_path / "effects.txt"
    cancelled = await _enqueue(api, "tests.record_effect", args={"path": str(effects)})
    kept = await _enqueue(api, "tests.record_effect", args={"path": str(effects)})
    r = await api.post(f"/v1/jobs/{cancelled['id']}/cancel")
    assert r.status_code == 200
    assert r.json()["state"] == "cancelled"
    proc = spawn("worker", "--queue", "default", env=WORKER_ENV)
    proc.wait_for_log(WORKER_READY, timeout_s=60)
    await job_in_state(api, kept["id"], "succeeded")
    # Both messages were consumed (FIFO: the cancelled one first), one job ran.
    assert (await api.get("/v1/queues/default")).json()["depth"] == 0
    assert _lines(effects) == [kept["id"]]
    skipped = (await api.get(f"/v1/jobs/{cancelled['id']}")).json()
    assert skipped["state"] == "cancelled"
    assert skipped["attempts"] == 0
    assert skipped["started_at"] is None


async def test_cancelled_retrying_job_is_not_retried(
    api: httpx.AsyncClient, worker: Any, redis_client: redis.Redis
) -> None:
    job = await _enqueue(api, "tests.flaky", args={"failures": 1, "retry_delay_s": 2})
    retrying = await job_in_state(api, job["id"], "retrying")
    r = await api.post(f"/v1/jobs/{job['id']}/cancel")
    assert r.status_code == 200
    assert r.json()["state"] == "cancelled"
    # The worker holds the retry until its ETA, then skips and acknowledges it: after the
    # ETA, nothing waits in the list or in kombu's unacked hash.
    await anyio.sleep(max(0.0, retrying["eta"] - time.time()))

    def drained() -> bool:
        return redis_client.hlen(keys.KOMBU_UNACKED) == 0 and redis_client.llen("default") == 0

    await eventually(lambda: anyio.to_thread.run_sync(drained), bool, timeout_s=20)
    done = (await api.get(f"/v1/jobs/{job['id']}")).json()
    assert done["state"] == "cancelled"
    assert done["attempts"] == 1
    assert redis_client.get(flaky_counter_key(job["id"])) == b"1"


async def test_running_job_stops_when_cancel_is_requested_and_shows_progress(
    api: httpx.AsyncClient, worker: Any
) -> None:
    job = await _enqueue(api, "tests.sleep", args={"seconds": 20, "step_s": 0.1})
    running = await job_until(
        api,
        job["id"],
        lambda r: r["state"] == "started" and (r["progress"] or {}).get("current", 0) >= 3,
    )
    assert running["progress"]["total"] == 200
    assert running["progress"]["message"].startswith("step ")
    r = await api.post(f"/v1/jobs/{job['id']}/cancel")
    assert r.status_code == 202
    assert r.json()["cancel_requested"] is True
    assert r.json()["state"] == "started"
    done = await job_in_state(api, job["id"], "succeeded", "failed", "cancelled", timeout_s=15)
    assert done["state"] == "cancelled"
    assert done["cancel_requested"] is True
    assert done["error"]["type"] == "JobCancelled"
    assert done["error"]["message"].startswith("cancelled at step ")
    assert int(done["error"]["message"].split()[3]) < 200
    assert done["finished_at"] - done["started_at"] < 15
    dead = (await api.get("/v1/dead-letters", params={"queue": "default"})).json()
    assert job["id"] not in [d["id"] for d in dead["dead_letters"]]


async def test_progress_is_visible_while_a_job_runs(api: httpx.AsyncClient, worker: Any) -> None:
    job = await _enqueue(api, "tests.sleep", args={"seconds": 2, "step_s": 0.1})
    seen: list[float] = []

    async def probe() -> dict[str, Any]:
        record: dict[str, Any] = (await api.get(f"/v1/jobs/{job['id']}")).json()
        if record["state"] == "started" and record["progress"]:
            seen.append(record["progress"]["current"])
        return record

    done = await eventually(probe, lambda r: r["state"] in ("succeeded", "failed"))
    assert done["state"] == "succeeded"
    assert done["progress"] == {"current": 20.0, "total": 20.0, "message": "done"}
    assert any(0 < current < 20 for current in seen), seen
    assert seen == sorted(seen)


async def test_idempotency_key_runs_the_job_once(
    api: httpx.AsyncClient, worker: Any, tmp_path: Path
) -> None:
    effects = tmp_path / "effects.txt"
    body = {"task": "tests.record_effect", "args": {"path": str(effects)}}
    headers = {"Idempotency-Key": "payment-7"}
    first = await api.post("/v1/jobs", json=body, headers=headers)
    second = await api.post("/v1/jobs", json=body, headers=headers)
    assert (first.status_code, second.status_code) == (201, 200)
    assert first.json()["id"] == second.json()["id"]
    await job_in_state(api, first.json()["id"], "succeeded")
    third = await api.post("/v1/jobs", json=body, headers=headers)
    assert third.status_code == 200
    assert third.json()["state"] == "succeeded"
    assert _lines(effects) == [first.json()["id"]]


async def test_concurrent_requests_with_one_key_make_one_job(
    api: httpx.AsyncClient, worker: Any, tmp_path: Path
) -> None:
    effects = tmp_path / "effects.txt"
    body = {"task": "tests.record_effect", "args": {"path": str(effects)}}
    responses: list[httpx.Response] = []

    async def post() -> None:
        responses.append(await api.post("/v1/jobs", json=body, headers={"Idempotency-Key": "race"}))

    async with anyio.create_task_group() as tg:
        for _ in range(10):
            tg.start_soon(post)
    assert sorted(r.status_code for r in responses) == [200] * 9 + [201]
    assert len({r.json()["id"] for r in responses}) == 1
    await job_in_state(api, responses[0].json()["id"], "succeeded")
    assert _lines(effects) == [responses[0].json()["id"]]


async def test_batch_jobs_all_run(api: httpx.AsyncClient, worker: Any, tmp_path: Path) -> None:
    effects = tmp_path / "effects.txt"
    items = [{"task": "tests.record_effect", "args": {"path": str(effects)}}] * 5
    r = await api.post("/v1/jobs:batch", json={"jobs": items})
    assert r.status_code == 201
    ids = [j["id"] for j in r.json()["jobs"]]
    for job_id in ids:
        await job_in_state(api, job_id, "succeeded")
    assert sorted(_lines(effects)) == sorted(ids)
