"""`/v1/jobs` without workers: enqueue, batch, idempotency, read, list, cancel."""

from __future__ import annotations

import json
import time
from datetime import UTC, datetime, timedelta

import httpx
import pytest
import redis

from jobyard.core import keys
from jobyard.core.bootstrap import Runtime
from jobyard.core.messages import ENQUEUED_AT_HEADER

pytestmark = [pytest.mark.integration, pytest.mark.anyio]


def _messages(redis_client: redis.Redis, list_key: str) -> list[dict[str, object]]:
    return [json.loads(raw) for raw in redis_client.lrange(list_key, 0, -1)]


async def test_enqueue_writes_record_and_message(
    api: httpx.AsyncClient, redis_client: redis.Redis
) -> None:
    before = time.time()
    r = await api.post("/v1/jobs", json={"task": "tests.flaky", "args": {"failures": 2}})
    assert r.status_code == 201, r.text
    job = r.json()
    assert r.headers["location"] == f"/v1/jobs/{job['id']}"
    assert r.headers["content-type"] == "application/json"
    assert job["task"] == "tests.flaky"
    assert job["queue"] == "default"
    assert job["state"] == "queued"
    assert job["args"] == {"failures": 2, "retry_delay_s": None}  # validated and complete
    assert job["priority"] == 0
    assert job["attempts"] == 0
    assert job["max_attempts"] == 3
    assert before <= job["enqueued_at"] <= time.time()
    (message,) = _messages(redis_client, "default")
    assert message["headers"]["id"] == job["id"]  # type: ignore[index]
    assert message["headers"]["task"] == "tests.flaky"  # type: ignore[index]
    assert message["headers"][ENQUEUED_AT_HEADER] == job["enqueued_at"]  # type: ignore[index]
    got = await api.get(f"/v1/jobs/{job['id']}")
    assert got.status_code == 200
    assert got.json() == job


async def test_priority_lands_in_its_kombu_list(
    api: httpx.AsyncClient, redis_client: redis.Redis
) -> None:
    r = await api.post("/v1/jobs", json={"task": "jobyard.noop", "queue": "emails", "priority": 7})
    assert r.status_code == 201, r.text
    assert r.json()["queue"] == "emails"
    assert r.json()["priority"] == 7
    assert redis_client.llen(keys.queue_list("emails", 6)) == 1
    assert redis_client.llen("emails") == 0


async def test_delay_and_eta_schedule_the_job(
    api: httpx.AsyncClient, redis_client: redis.Redis
) -> None:
    r = await api.post("/v1/jobs", json={"task": "jobyard.noop", "delay_s": 120})
    assert r.status_code == 201, r.text
    delayed = r.json()
    assert delayed["state"] == "scheduled"
    assert delayed["eta"] == pytest.approx(delayed["enqueued_at"] + 120)
    eta = datetime.now(UTC) + timedelta(hours=1)
    r = await api.post("/v1/jobs", json={"task": "jobyard.noop", "eta": eta.isoformat()})
    assert r.status_code == 201, r.text
    assert r.json()["state"] == "scheduled"
    assert r.json()["eta"] == pytest.approx(eta.timestamp())
    assert redis_client.llen("default") == 0
    assert redis_client.zcard(keys.SCHEDULED) == 2
    assert redis_client.hlen(keys.SCHEDULED_MESSAGES) == 2


async def test_idempotency_key_returns_the_same_job(
    api: httpx.AsyncClient, redis_client: redis.Redis
) -> None:
    body = {"task": "tests.flaky", "args": {"failures": 0}}
    first = await api.post("/v1/jobs", json=body, headers={"Idempotency-Key": "order-42"})
    assert first.status_code == 201, first.text
    assert "idempotent-replayed" not in first.headers
    again = await api.post("/v1/jobs", json=body, headers={"Idempotency-Key": "order-42"})
    assert again.status_code == 200, again.text
    assert again.headers["idempotent-replayed"] == "true"
    assert again.headers["location"] == f"/v1/jobs/{first.json()['id']}"
    assert again.json() == first.json()
    assert again.json()["idempotency_key"] == "order-42"
    assert redis_client.llen("default") == 1  # one message: the job runs once
    claim = json.loads(redis_client.get(keys.idempotency("order-42")) or b"{}")
    assert claim["job_id"] == first.json()["id"]
    assert 86_300 < redis_client.ttl(keys.idempotency("order-42")) <= 86_400


async def test_idempotency_key_with_another_body_is_a_conflict(
    api: httpx.AsyncClient, redis_client: redis.Redis
) -> None:
    headers = {"Idempotency-Key": "order-43"}
    first = await api.post("/v1/jobs", json={"task": "jobyard.noop"}, headers=headers)
    assert first.status_code == 201
    other = await api.post(
        "/v1/jobs", json={"task": "jobyard.noop", "priority": 5}, headers=headers
    )
    assert other.status_code == 409
    problem = other.json()
    assert other.headers["content-type"] == "application/problem+json"
    assert problem["title"] == "Idempotency-Key reused"
    assert "'order-43'" in problem["detail"]
    assert "different request body" in problem["detail"]
    assert redis_client.llen("default") == 1


async def test_idempotency_claim_of_a_failed_enqueue_is_taken_over(
    api: httpx.AsyncClient, redis_client: redis.Redis
) -> None:
    # A claim whose transaction never committed (the API died): stale after 10 s.
    stale = {"job_id": "never-written", "fingerprint": "x", "claimed_at": time.time() - 60}
    redis_client.set(keys.idempotency("k-stale"), json.dumps(stale))
    r = await api.post(
        "/v1/jobs", json={"task": "jobyard.noop"}, headers={"Idempotency-Key": "k-stale"}
    )
    assert r.status_code == 201, r.text
    claim = json.loads(redis_client.get(keys.idempotency("k-stale")) or b"{}")
    assert claim["job_id"] == r.json()["id"]


async def test_idempotency_key_header_is_validated(api: httpx.AsyncClient) -> None:
    r = await api.post(
        "/v1/jobs", json={"task": "jobyard.noop"}, headers={"Idempotency-Key": "x" * 201}
    )
    assert r.status_code == 422
    assert r.json()["errors"][0]["field"] == "Idempotency-Key"


async def test_batch_enqueues_all_in_order(
    api: httpx.AsyncClient, redis_client: redis.Redis
) -> None:
    items = [{"task": "tests.flaky", "args": {"failures": i}} for i in range(5)]
    items.append({"task": "jobyard.noop", "queue": "reports", "priority": 9})
    r = await api.post("/v1/jobs:batch", json={"jobs": items})
    assert r.status_code == 201, r.text
    jobs = r.json()["jobs"]
    assert [j["args"]["failures"] for j in jobs[:5]] == list(range(5))
    assert jobs[5]["queue"] == "reports"
    assert len({j["id"] for j in jobs}) == 6
    assert redis_client.llen("default") == 5
    assert redis_client.llen(keys.queue_list("reports", 9)) == 1
    for job in jobs:
        assert (await api.get(f"/v1/jobs/{job['id']}")).json()["state"] == "queued"


async def test_batch_is_all_or_nothing_and_names_each_bad_field(
    api: httpx.AsyncClient, redis_client: redis.Redis
) -> None:
    items = [
        {"task": "jobyard.noop"},
        {"task": "tests.flaky", "args": {"failures": -1}},
        {"task": "tests.nope"},
        {"task": "tests.sleep", "args": {"seconds": 1, "extra": 1}},
        {"task": "jobyard.noop", "queue": "nope"},
        {"task": "jobyard.noop", "delay_s": 10**9},
    ]
    r = await api.post("/v1/jobs:batch", json={"jobs": items})
    assert r.status_code == 422
    fields = [e["field"] for e in r.json()["errors"]]
    assert fields == [
        "jobs[1].args.failures",
        "jobs[2].task",
        "jobs[3].args.extra",
        "jobs[4].queue",
        "jobs[5].delay_s",
    ]
    assert "unknown task 'tests.nope'" in r.json()["errors"][1]["message"]
    assert r.json()["errors"][2]["message"] == "unknown field (check its spelling)"
    assert redis_client.dbsize() == 0


async def test_batch_size_is_limited(
    api: httpx.AsyncClient, runtime: Runtime, redis_client: redis.Redis
) -> None:
    too_many = runtime.config.limits.max_batch_size + 1
    r = await api.post("/v1/jobs:batch", json={"jobs": [{"task": "jobyard.noop"}] * too_many})
    assert r.status_code == 422
    assert r.json()["errors"] == [
        {
            "field": "jobs",
            "message": f"at most {too_many - 1} jobs per batch (limits.max_batch_size), "
            f"got {too_many}",
        }
    ]
    empty = await api.post("/v1/jobs:batch", json={"jobs": []})
    assert empty.status_code == 422
    assert empty.json()["errors"][0]["field"] == "jobs"
    assert redis_client.dbsize() == 0


async def test_list_newest_first_with_filters(api: httpx.AsyncClient) -> None:
    ids = []
    for task, queue in [
        ("jobyard.noop", "default"),
        ("tests.flaky", "default"),
        ("jobyard.noop", "emails"),
        ("tests.flaky", "emails"),
    ]:
        r = await api.post("/v1/jobs", json={"task": task, "queue": queue})
        assert r.status_code == 201
        ids.append(r.json()["id"])
    cancelled = await api.post(f"/v1/jobs/{ids[1]}/cancel")
    assert cancelled.status_code == 200

    async def listed(**params: object) -> list[str]:
        r = await api.get("/v1/jobs", params=params)
        assert r.status_code == 200, r.text
        return [j["id"] for j in r.json()["jobs"]]

    assert await listed() == ids[::-1]
    assert await listed(limit=2) == [ids[3], ids[2]]
    assert await listed(queue="emails") == [ids[3], ids[2]]
    assert await listed(task="tests.flaky") == [ids[3], ids[1]]
    assert await listed(state="cancelled") == [ids[1]]
    assert await listed(state="queued", queue="default") == [ids[0]]
    assert await listed(state="queued", task="tests.flaky", queue="emails") == [ids[3]]


async def test_list_skips_expired_records(
    api: httpx.AsyncClient, redis_client: redis.Redis
) -> None:
    a = (await api.post("/v1/jobs", json={"task": "jobyard.noop"})).json()["id"]
    b = (await api.post("/v1/jobs", json={"task": "jobyard.noop"})).json()["id"]
    redis_client.delete(keys.job(a))
    r = await api.get("/v1/jobs")
    assert [j["id"] for j in r.json()["jobs"]] == [b]


async def test_list_rejects_unknown_queue_state_and_bad_limit(api: httpx.AsyncClient) -> None:
    r = await api.get("/v1/jobs", params={"queue": "nope"})
    assert r.status_code == 422
    assert r.json()["detail"] == "unknown queue 'nope'; configured queues: default, emails, reports"
    assert r.json()["errors"][0]["field"] == "queue"
    r = await api.get("/v1/jobs", params={"state": "done"})
    assert r.status_code == 422
    (error,) = r.json()["errors"]
    assert error["field"] == "state"
    for state in ("queued", "scheduled", "started", "retrying", "succeeded", "failed", "dead"):
        assert f"'{state}'" in error["message"]
    for limit in (0, 501, "x"):
        r = await api.get("/v1/jobs", params={"limit": limit})
        assert r.status_code == 422
        assert r.json()["errors"][0]["field"] == "limit"


async def test_get_unknown_job_is_404(api: httpx.AsyncClient) -> None:
    r = await api.get("/v1/jobs/no-such-job")
    assert r.status_code == 404
    assert r.headers["content-type"] == "application/problem+json"
    assert r.json() == {
        "type": "urn:jobyard:problem:job-not-found",
        "title": "Job not found",
        "status": 404,
        "detail": "no job 'no-such-job': it never existed or its record expired",
    }


async def test_cancel_queued_and_scheduled_jobs(
    api: httpx.AsyncClient, redis_client: redis.Redis
) -> None:
    queued = (await api.post("/v1/jobs", json={"task": "jobyard.noop"})).json()
    scheduled = (await api.post("/v1/jobs", json={"task": "jobyard.noop", "delay_s": 60})).json()
    r = await api.post(f"/v1/jobs/{queued['id']}/cancel")
    assert r.status_code == 200, r.text
    assert r.json()["state"] == "cancelled"
    assert r.json()["finished_at"] is not None
    r = await api.post(f"/v1/jobs/{scheduled['id']}/cancel")
    assert r.status_code == 200
    assert r.json()["state"] == "cancelled"
    assert redis_client.zcard(keys.SCHEDULED) == 0
    assert redis_client.hlen(keys.SCHEDULED_MESSAGES) == 0
    # A finished job cannot be cancelled again.
    again = await api.post(f"/v1/jobs/{queued['id']}/cancel")
    assert again.status_code == 409
    assert again.json()["detail"] == (
        f"job '{queued['id']}' is already cancelled; only queued, scheduled, retrying or "
        "started jobs can be cancelled"
    )
    missing = await api.post("/v1/jobs/nope/cancel")
    assert missing.status_code == 404


async def test_cancel_started_job_requests_a_stop(
    api: httpx.AsyncClient, redis_client: redis.Redis
) -> None:
    job = (await api.post("/v1/jobs", json={"task": "jobyard.noop"})).json()
    redis_client.hset(keys.job(job["id"]), "state", "started")
    r = await api.post(f"/v1/jobs/{job['id']}/cancel")
    assert r.status_code == 202
    assert r.json()["state"] == "started"
    assert r.json()["cancel_requested"] is True
    for state in ("succeeded", "failed", "dead"):
        redis_client.hset(keys.job(job["id"]), "state", state)
        r = await api.post(f"/v1/jobs/{job['id']}/cancel")
        assert r.status_code == 409
        assert f"is already {state}" in r.json()["detail"]
