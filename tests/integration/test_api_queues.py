"""`/v1/queues`, `/v1/tasks`, `/v1/schedules`, `/healthz`, `/readyz`."""

from __future__ import annotations

import json
import time
from pathlib import Path

import httpx
import pytest
import redis

from jobyard.core import keys
from jobyard.core.bootstrap import Runtime
from jobyard.core.queues import parse_queue_stats, plan_queue_stats
from jobyard.core.schedules import next_run_at
from tests.conftest import TEST_CONFIG
from tests.integration.conftest import api_client, make_runtime
from tests.support.testjobs import SleepArgs

pytestmark = [pytest.mark.integration, pytest.mark.anyio]


def _envelope(enqueued_at: float | None) -> str:
    headers: dict[str, object] = {"id": "x", "task": "jobyard.noop"}
    if enqueued_at is not None:
        headers["jobyard_enqueued_at"] = enqueued_at
    return json.dumps({"body": "", "headers": headers, "properties": {}})


async def test_queue_stats_count_every_priority_list(
    api: httpx.AsyncClient, redis_client: redis.Redis
) -> None:
    for priority in (0, 0, 2, 3, 5, 9):
        r = await api.post("/v1/jobs", json={"task": "jobyard.noop", "priority": priority})
        assert r.status_code == 201
    now = time.time()
    # The oldest waiting message sits at the tail of a lower-priority list.
    redis_client.rpush(keys.queue_list("default", 6), _envelope(now - 100))
    redis_client.zadd(keys.running("default"), {"a": now, "stale": now - 1000})
    redis_client.zadd(keys.workers("default"), {"w1": now - 1, "gone": now - 1000})
    redis_client.zadd(keys.dead_letters("default"), {"d1": now, "d2": now})
    r = await api.get("/v1/queues")
    assert r.status_code == 200
    queues = r.json()["queues"]
    assert [q["name"] for q in queues] == ["default", "emails", "reports"]
    default = queues[0]
    assert 100 <= default["oldest_job_age_s"] < 130
    assert default == {
        "name": "default",
        "depth": 7,
        "depth_by_priority": {"0": 3, "3": 2, "6": 1, "9": 1},
        "oldest_job_age_s": default["oldest_job_age_s"],
        "in_progress": 1,
        "workers": 1,
        "dead_letters": 2,
    }
    assert queues[1] == {
        "name": "emails",
        "depth": 0,
        "depth_by_priority": {"0": 0, "3": 0, "6": 0, "9": 0},
        "oldest_job_age_s": None,
        "in_progress": 0,
        "workers": 0,
        "dead_letters": 0,
    }
    one = await api.get("/v1/queues/default")
    assert one.status_code == 200
    assert one.json()["depth"] == 7
    assert one.json()["depth_by_priority"] == default["depth_by_priority"]


async def test_oldest_age_of_messages_without_enqueue_time_is_null(
    api: httpx.AsyncClient, redis_client: redis.Redis
) -> None:
    redis_client.lpush("emails", _envelope(None))
    redis_client.lpush(keys.queue_list("emails", 3), "not json")
    stats = (await api.get("/v1/queues/emails")).json()
    assert stats["depth"] == 2
    assert stats["oldest_job_age_s"] is None


async def test_queue_stats_cost_does_not_grow_with_the_backlog(
    api: httpx.AsyncClient, redis_client: redis.Redis, runtime: Runtime
) -> None:
    pipe = redis_client.pipeline(transaction=False)
    for i in range(5000):
        pipe.lpush("default", _envelope(time.time() - i))
    pipe.execute()
    redis_client.config_resetstat()
    r = await api.get("/v1/queues")
    assert r.json()["queues"][0]["depth"] == 5000
    stats = redis_client.info("commandstats")
    n_lists = len(runtime.config.queues) * len(runtime.config.broker.priority_steps)
    assert stats["cmdstat_llen"]["calls"] == n_lists
    assert stats["cmdstat_lindex"]["calls"] == n_lists
    assert stats["cmdstat_zcount"]["calls"] == 2 * len(runtime.config.queues)
    assert stats["cmdstat_zcard"]["calls"] == len(runtime.config.queues)
    assert "cmdstat_lrange" not in stats


async def test_queue_stats_planner_works_on_a_sync_pipeline(
    api: httpx.AsyncClient, redis_client: redis.Redis, runtime: Runtime
) -> None:
    for priority in (0, 4, 8):
        await api.post("/v1/jobs", json={"task": "jobyard.noop", "priority": priority})
    pipe = redis_client.pipeline(transaction=False)
    pipe.ping()  # commands queued before the plan's are skipped via first_index
    plan = plan_queue_stats(pipe, runtime.config, runtime.settings, now=time.time(), first_index=1)
    stats = parse_queue_stats(plan, pipe.execute())
    api_stats = (await api.get("/v1/queues")).json()["queues"]
    assert [s.depth_by_priority for s in stats] == [q["depth_by_priority"] for q in api_stats]
    assert stats[0].depth_by_priority == {"0": 1, "3": 1, "6": 1, "9": 0}


async def test_unknown_queue_is_404(api: httpx.AsyncClient) -> None:
    r = await api.get("/v1/queues/fast")
    assert r.status_code == 404
    assert r.json()["detail"] == "unknown queue 'fast'; configured queues: default, emails, reports"


async def test_tasks_list_registered_jobs_with_schemas(
    api: httpx.AsyncClient, runtime: Runtime
) -> None:
    r = await api.get("/v1/tasks")
    assert r.status_code == 200
    tasks = {t["name"]: t for t in r.json()["tasks"]}
    assert sorted(tasks) == runtime.registry.names()
    assert tasks["tests.sleep"] == {
        "name": "tests.sleep",
        "queue": "default",
        "description": "Sleep `seconds`, reporting progress every `step_s`; stop early on cancel.",
        "args_schema": SleepArgs.model_json_schema(),
        "max_attempts": 1,
        "soft_time_limit_s": 5.0,
        "time_limit_s": 8.0,
        "idempotent": False,
    }
    assert tasks["tests.flaky"]["max_attempts"] == 3
    assert tasks["jobyard.noop"]["idempotent"] is True
    assert tasks["tests.sleep"]["args_schema"]["required"] == ["seconds"]


SCHEDULES = """
schedules:
  - name: nightly
    task: jobyard.noop
    cron: "30 2 * * *"
    missed: skip
  - name: often
    task: tests.flaky
    interval_s: 60
    queue: emails
    args: {failures: 0}
    enabled: false
"""


async def test_schedules_show_last_and_next_run(
    redis_url: str, config_path: Path, redis_client: redis.Redis
) -> None:
    config_path.write_text(TEST_CONFIG + SCHEDULES)
    rt = make_runtime(redis_url, config_path)
    last = time.time() - 30
    redis_client.set(keys.schedule_last_run("often"), repr(last))
    async with api_client(rt) as api:
        before = time.time()
        r = await api.get("/v1/schedules")
        after = time.time()
    assert r.status_code == 200
    nightly, often = r.json()["schedules"]
    assert often == {
        "name": "often",
        "task": "tests.flaky",
        "cron": None,
        "interval_s": 60.0,
        "queue": "emails",
        "missed": "run-once",
        "enabled": False,
        "last_run_at": last,
        "next_run_at": last + 60,
    }
    assert nightly["cron"] == "30 2 * * *"
    assert nightly["missed"] == "skip"
    assert nightly["last_run_at"] is None
    expected = next_run_at(rt.config.schedules[0], None, before)
    assert expected == next_run_at(rt.config.schedules[0], None, after)  # same fire time
    assert nightly["next_run_at"] == expected
    assert time.gmtime(expected)[3:5] == (2, 30)


async def test_no_schedules(api: httpx.AsyncClient) -> None:
    assert (await api.get("/v1/schedules")).json() == {"schedules": []}


async def test_health_probes(api: httpx.AsyncClient) -> None:
    r = await api.get("/healthz")
    assert (r.status_code, r.json()) == (200, {"status": "ok"})
    r = await api.get("/readyz")
    assert (r.status_code, r.json()) == (200, {"status": "ok"})
