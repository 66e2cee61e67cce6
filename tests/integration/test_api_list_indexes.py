"""Listing filters are served from indexes (issue 11.9): the cost of `GET /v1/jobs` with a
filter does not grow with the records that do not match. Counted with Redis's own
`INFO commandstats` on a real redis-server."""

from __future__ import annotations

import httpx
import pytest
import redis

from jobyard.core import keys

pytestmark = [pytest.mark.integration, pytest.mark.anyio]

UNRELATED = 5000


def _calls(redis_client: redis.Redis) -> dict[str, int]:
    stats = redis_client.info("commandstats")
    calls = {name.removeprefix("cmdstat_"): int(v["calls"]) for name, v in stats.items()}
    return {k: v for k, v in calls.items() if k not in ("info", "config|resetstat")}


async def _seed(api: httpx.AsyncClient, jobs: list[dict[str, object]]) -> None:
    for start in range(0, len(jobs), 1000):
        r = await api.post("/v1/jobs:batch", json={"jobs": jobs[start : start + 1000]})
        assert r.status_code == 201, r.text


async def test_a_task_filter_matching_nothing_reads_no_record(
    api: httpx.AsyncClient, redis_client: redis.Redis
) -> None:
    await _seed(api, [{"task": "jobyard.noop"}] * UNRELATED)
    redis_client.config_resetstat()
    r = await api.get("/v1/jobs", params={"limit": 500, "task": "nope"})
    assert r.status_code == 200, r.text
    assert r.json() == {"jobs": []}
    calls = _calls(redis_client)
    assert "hgetall" not in calls, calls  # no record read
    assert sum(calls.values()) <= 2, calls
    # With a queue as well: still no record read.
    redis_client.config_resetstat()
    r = await api.get("/v1/jobs", params={"limit": 500, "task": "nope", "queue": "default"})
    assert r.json() == {"jobs": []}
    calls = _calls(redis_client)
    assert "hgetall" not in calls, calls
    assert sum(calls.values()) <= 2, calls


async def test_a_task_filter_reads_only_the_matching_records(
    api: httpx.AsyncClient, redis_client: redis.Redis
) -> None:
    await _seed(api, [{"task": "tests.flaky"}] * 7)
    await _seed(api, [{"task": "jobyard.noop"}] * UNRELATED)
    await _seed(api, [{"task": "tests.flaky", "queue": "emails"}] * 3)
    redis_client.config_resetstat()
    r = await api.get("/v1/jobs", params={"limit": 500, "task": "tests.flaky"})
    jobs = r.json()["jobs"]
    assert [j["task"] for j in jobs] == ["tests.flaky"] * 10
    assert [j["queue"] for j in jobs] == ["emails"] * 3 + ["default"] * 7  # newest first
    assert _calls(redis_client)["hgetall"] == 10
    redis_client.config_resetstat()
    r = await api.get("/v1/jobs", params={"task": "tests.flaky", "queue": "emails"})
    assert [j["queue"] for j in r.json()["jobs"]] == ["emails"] * 3
    assert _calls(redis_client)["hgetall"] <= 3
    r = await api.get("/v1/jobs", params={"task": "tests.flaky", "queue": "default", "limit": 2})
    assert [(j["task"], j["queue"]) for j in r.json()["jobs"]] == [("tests.flaky", "default")] * 2


async def test_the_task_index_is_written_by_every_enqueue_and_trimmed_by_age(
    api: httpx.AsyncClient, redis_client: redis.Redis
) -> None:
    one = (await api.post("/v1/jobs", json={"task": "tests.flaky"})).json()
    wf = await api.post(
        "/v1/workflows", json={"type": "chain", "jobs": [{"task": "tests.flaky"}] * 2}
    )
    assert wf.status_code == 201, wf.text
    ids = {one["id"], *(j["id"] for j in wf.json()["jobs"])}
    members = {m.decode() for m in redis_client.zrange(keys.by_task("tests.flaky"), 0, -1)}
    assert members == ids
    # An entry older than the result TTL is dropped by the next enqueue of the task.
    redis_client.zadd(keys.by_task("tests.flaky"), {"ancient": 1.0})
    await api.post("/v1/jobs:batch", json={"jobs": [{"task": "tests.flaky"}]})
    assert redis_client.zscore(keys.by_task("tests.flaky"), "ancient") is None
    assert redis_client.zcard(keys.by_task("tests.flaky")) == 4
