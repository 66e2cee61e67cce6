"""The store's hot-path writes: the start script, a success without an error to clear,
and batch enqueue, each against a real Redis."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import pytest
import redis

from jobyard.core import keys, store
from jobyard.core.bootstrap import bootstrap
from jobyard.core.celery_app import create_celery
from jobyard.core.enqueue import EnqueueRequest, PreparedJob, prepare
from jobyard.core.records import JobError

pytestmark = pytest.mark.integration


def _jobs(redis_url: str, config_path: Path, requests: list[EnqueueRequest]) -> list[PreparedJob]:
    rt = bootstrap({"JOBYARD_REDIS_URL": redis_url, "JOBYARD_CONFIG": str(config_path)})
    app = create_celery(rt.settings, rt.config, rt.registry)
    return [prepare(app, rt.config, rt.registry, r) for r in requests]


def _start(client: redis.Redis, job_id: str, queue: str = "default") -> list[Any]:
    script = client.register_script(store.START_SCRIPT)
    return list(
        script(keys=[keys.job(job_id), keys.running(queue)], args=[123.5, "host-a", job_id])
    )


def test_start_script_counts_attempts_and_reports_an_earlier_error(
    redis_url: str, config_path: Path, redis_client: redis.Redis
) -> None:
    (job,) = _jobs(redis_url, config_path, [EnqueueRequest("jobyard.noop")])
    pipe = redis_client.pipeline()
    store.plan_enqueue(pipe, job.record, job.message, result_ttl_s=60)
    pipe.execute()
    jid = job.record.id

    assert _start(redis_client, jid) == [b"queued", 1, 0]
    record = redis_client.hgetall(keys.job(jid))
    assert (record[b"state"], record[b"attempts"], record[b"started_at"], record[b"worker"]) == (
        b"started",
        b"1",
        b"123.5",
        b"host-a",
    )
    assert redis_client.zscore(keys.running("default"), jid) == 123.5

    pipe = redis_client.pipeline()
    store.plan_retrying(pipe, jid, "default", JobError(type="E", message="boom"), 999.0)
    pipe.execute()
    assert _start(redis_client, jid) == [b"retrying", 2, 1]
    assert redis_client.hget(keys.job(jid), "attempts") == b"2"


def test_start_script_leaves_cancelled_succeeded_and_missing_jobs_alone(
    redis_client: redis.Redis,
) -> None:
    redis_client.hset(keys.job("c"), mapping={"state": "cancelled", "attempts": "0"})
    redis_client.hset(keys.job("s"), mapping={"state": "succeeded", "attempts": "1"})
    assert _start(redis_client, "c") == [b"cancelled", 0, 0]
    assert _start(redis_client, "s") == [b"succeeded", 0, 0]
    assert _start(redis_client, "nope") == [b"missing", 0, 0]
    assert redis_client.hgetall(keys.job("c")) == {b"state": b"cancelled", b"attempts": b"0"}
    assert redis_client.hget(keys.job("s"), "attempts") == b"1"
    assert not redis_client.exists(keys.job("nope"))
    assert redis_client.zcard(keys.running("default")) == 0


def test_succeeded_clears_the_error_only_when_asked(redis_client: redis.Redis) -> None:
    planned = {}
    for clear_error in (True, False):
        redis_client.hset(keys.job("j"), mapping={"state": "started", "error": '{"type":"E"}'})
        redis_client.zadd(keys.running("default"), {"j": 1.0})
        pipe = redis_client.pipeline()
        store.plan_succeeded(
            pipe, "j", "default", {"ok": 1}, result_ttl_s=77, clear_error=clear_error
        )
        planned[clear_error] = len(pipe.command_stack)
        pipe.execute()
        record = redis_client.hgetall(keys.job("j"))
        assert record[b"state"] == b"succeeded"
        assert record[b"result"] == b'{"ok":1}'
        assert (b"error" in record) is (not clear_error)
        assert 0 < redis_client.ttl(keys.job("j")) <= 77
        assert redis_client.zcard(keys.running("default")) == 0
        redis_client.delete(keys.job("j"))
    assert planned[True] == planned[False] + 1  # the HDEL of the error


def _snapshot(client: redis.Redis) -> dict[bytes, Any]:
    out: dict[bytes, Any] = {}
    for key in sorted(client.keys("*")):
        kind = client.type(key)
        if kind == b"hash":
            # TTL to the nearest 100 s: the two snapshots are taken a moment apart.
            out[key] = ("hash", client.hgetall(key), round(client.ttl(key), -2))
        elif kind == b"zset":
            out[key] = ("zset", client.zrange(key, 0, -1, withscores=True))
        elif kind == b"list":
            out[key] = ("list", client.lrange(key, 0, -1))
        else:
            raise AssertionError(f"unexpected {kind!r} at {key!r}")
    return out


def test_enqueue_many_writes_what_enqueue_writes_one_by_one(
    redis_url: str, config_path: Path, redis_client: redis.Redis
) -> None:
    now = time.time()
    jobs = _jobs(
        redis_url,
        config_path,
        [
            EnqueueRequest("jobyard.noop"),
            EnqueueRequest("jobyard.noop", priority=9),
            EnqueueRequest("jobyard.noop", queue="emails"),
            EnqueueRequest("jobyard.noop", eta=now + 600),
            EnqueueRequest("jobyard.noop"),
        ],
    )
    pipe = redis_client.pipeline()
    for job in jobs:
        store.plan_enqueue(pipe, job.record, job.message, result_ttl_s=3600)
    one_by_one_commands = len(pipe.command_stack)
    pipe.execute()
    one_by_one = _snapshot(redis_client)
    redis_client.flushdb()

    pipe = redis_client.pipeline()
    store.plan_enqueue_many(pipe, ((j.record, j.message) for j in jobs), result_ttl_s=3600)
    commands = len(pipe.command_stack)
    pipe.execute()
    assert _snapshot(redis_client) == one_by_one
    # Queued jobs: HSET + EXPIRE each, then one write per index and list for the batch.
    assert commands < one_by_one_commands * 0.8
    assert redis_client.lrange("default", 0, -1)[-1] == jobs[0].message.payload.encode()
