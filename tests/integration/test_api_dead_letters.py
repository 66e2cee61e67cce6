"""`/v1/dead-letters` against the store as workers leave it (no worker needed here)."""

from __future__ import annotations

import json
import time
from typing import Any

import anyio
import httpx
import pytest
import redis

from jobyard.core import keys, store
from jobyard.core.bootstrap import Runtime
from jobyard.core.records import JobError

pytestmark = [pytest.mark.integration, pytest.mark.anyio]

ERROR = JobError(type="RetryableError", message="boom")


async def _dead_job(
    api: httpx.AsyncClient, redis_client: redis.Redis, runtime: Runtime, **body: Any
) -> dict[str, Any]:
    """Enqueue a job, consume its message and file it dead, as a worker's last attempt does."""
    r = await api.post("/v1/jobs", json={"task": "jobyard.noop", **body})
    assert r.status_code == 201, r.text
    job: dict[str, Any] = r.json()
    for name in keys.queue_lists(job["queue"], runtime.config.broker.priority_steps):
        redis_client.delete(name)
    redis_client.hset(keys.job(job["id"]), mapping={"attempts": "3", "started_at": "1"})
    pipe = redis_client.pipeline()
    store.plan_failed(
        pipe, job["id"], job["queue"], ERROR, dead=True, result_ttl_s=3600, dead_letter_ttl_s=7200
    )
    pipe.execute()
    time.sleep(0.002)  # distinct death times
    return job


async def test_list_newest_first_across_queues(
    api: httpx.AsyncClient, redis_client: redis.Redis, runtime: Runtime
) -> None:
    a = await _dead_job(api, redis_client, runtime)
    b = await _dead_job(api, redis_client, runtime, queue="emails")
    c = await _dead_job(api, redis_client, runtime)
    r = await api.get("/v1/dead-letters")
    assert r.status_code == 200
    listed = r.json()["dead_letters"]
    assert [d["id"] for d in listed] == [c["id"], b["id"], a["id"]]
    assert listed[0]["state"] == "dead"
    assert listed[0]["error"] == {"type": "RetryableError", "message": "boom"}
    limited = (await api.get("/v1/dead-letters", params={"limit": 2})).json()["dead_letters"]
    assert [d["id"] for d in limited] == [c["id"], b["id"]]
    default = await api.get("/v1/dead-letters", params={"queue": "default"})
    assert [d["id"] for d in default.json()["dead_letters"]] == [c["id"], a["id"]]
    redis_client.delete(keys.job(c["id"]))  # an expired record is skipped
    assert [d["id"] for d in (await api.get("/v1/dead-letters")).json()["dead_letters"]] == [
        b["id"],
        a["id"],
    ]
    bad = await api.get("/v1/dead-letters", params={"queue": "nope"})
    assert bad.status_code == 422
    assert bad.json()["errors"][0]["field"] == "queue"


async def test_retry_republishes_the_same_job(
    api: httpx.AsyncClient, redis_client: redis.Redis, runtime: Runtime
) -> None:
    job = await _dead_job(api, redis_client, runtime, priority=4)
    r = await api.post(f"/v1/dead-letters/{job['id']}/retry")
    assert r.status_code == 200, r.text
    retried = r.json()
    assert retried["id"] == job["id"]
    assert retried["state"] == "queued"
    assert retried["attempts"] == 0
    assert retried["started_at"] is None
    assert retried["finished_at"] is None
    assert retried["error"] == {"type": "RetryableError", "message": "boom"}
    assert retried["enqueued_at"] == job["enqueued_at"]
    assert redis_client.zcard(keys.dead_letters("default")) == 0
    (raw,) = redis_client.lrange(keys.queue_list("default", 3), 0, -1)
    message = json.loads(raw)
    assert message["headers"]["id"] == job["id"]
    assert message["properties"]["priority"] == 4
    assert message["headers"]["jobyard_enqueued_at"] > job["enqueued_at"]
    assert 3500 < redis_client.ttl(keys.job(job["id"])) <= 3600
    again = await api.post(f"/v1/dead-letters/{job['id']}/retry")
    assert again.status_code == 409
    assert again.json()["detail"] == f"job '{job['id']}' is queued, not dead"
    missing = await api.post("/v1/dead-letters/nope/retry")
    assert missing.status_code == 404
    assert missing.json()["detail"] == "job 'nope' does not exist"


async def test_concurrent_retries_publish_once(
    api: httpx.AsyncClient, redis_client: redis.Redis, runtime: Runtime
) -> None:
    job = await _dead_job(api, redis_client, runtime)
    statuses: list[int] = []

    async def retry() -> None:
        statuses.append((await api.post(f"/v1/dead-letters/{job['id']}/retry")).status_code)

    async with anyio.create_task_group() as tg:
        for _ in range(5):
            tg.start_soon(retry)
    assert sorted(statuses) == [200, 409, 409, 409, 409]
    assert redis_client.llen("default") == 1


async def test_delete_one(
    api: httpx.AsyncClient, redis_client: redis.Redis, runtime: Runtime
) -> None:
    job = await _dead_job(api, redis_client, runtime)
    r = await api.delete(f"/v1/dead-letters/{job['id']}")
    assert r.status_code == 204
    assert r.content == b""
    assert redis_client.exists(keys.job(job["id"])) == 0
    assert redis_client.zcard(keys.dead_letters("default")) == 0
    assert (await api.delete(f"/v1/dead-letters/{job['id']}")).status_code == 404
    alive = (await api.post("/v1/jobs", json={"task": "jobyard.noop"})).json()
    r = await api.delete(f"/v1/dead-letters/{alive['id']}")
    assert r.status_code == 409
    assert r.json()["title"] == "Not a dead letter"
    assert redis_client.exists(keys.job(alive["id"])) == 1


async def test_bulk_retry_and_purge_of_a_queue(
    api: httpx.AsyncClient, redis_client: redis.Redis, runtime: Runtime
) -> None:
    retryable = [await _dead_job(api, redis_client, runtime) for _ in range(2)]
    gone_task = await _dead_job(api, redis_client, runtime)
    redis_client.hset(keys.job(gone_task["id"]), "task", "old.removed")
    expired = await _dead_job(api, redis_client, runtime)
    redis_client.delete(keys.job(expired["id"]))
    other_queue = await _dead_job(api, redis_client, runtime, queue="emails")

    r = await api.post("/v1/dead-letters:retry", params={"queue": "default"})
    assert r.status_code == 200, r.text
    assert r.json() == {"retried": 2, "skipped": 1}
    assert redis_client.llen("default") == 2
    for job in retryable:
        assert (await api.get(f"/v1/jobs/{job['id']}")).json()["state"] == "queued"
    assert [m.decode() for m in redis_client.zrange(keys.dead_letters("default"), 0, -1)] == [
        gone_task["id"]
    ]

    r = await api.delete("/v1/dead-letters", params={"queue": "default"})
    assert r.status_code == 200
    assert r.json() == {"purged": 1}
    assert (await api.get(f"/v1/jobs/{gone_task['id']}")).status_code == 404
    assert redis_client.zcard(keys.dead_letters("emails")) == 1
    assert (await api.get(f"/v1/jobs/{other_queue['id']}")).json()["state"] == "dead"
    assert (await api.delete("/v1/dead-letters", params={"queue": "emails"})).json() == {
        "purged": 1
    }


async def test_bulk_operations_need_a_configured_queue(api: httpx.AsyncClient) -> None:
    for method, path in (("POST", "/v1/dead-letters:retry"), ("DELETE", "/v1/dead-letters")):
        r = await api.request(method, path)
        assert r.status_code == 422
        assert r.json()["errors"] == [{"field": "queue", "message": "Field required"}]
        r = await api.request(method, path, params={"queue": "nope"})
        assert r.status_code == 422
        assert r.json()["detail"] == (
            "unknown queue 'nope'; configured queues: default, emails, reports"
        )
