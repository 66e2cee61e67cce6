"""The scale workload's fast backlog writer repeats exactly what `store.plan_enqueue`
writes for a job (its ids aside), so the memory per queued job it measures is real."""

from __future__ import annotations

import json
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import redis
from bench.systems.base import BenchEnv
from bench.systems.jobyard_system import Jobyard
from bench.workloads.scale import clone_commands, template_for

from jobyard.core import keys, store


def _system(redis_url: str, tmp_path: Path) -> Jobyard:
    fake_redis: Any = SimpleNamespace(url=redis_url)
    return Jobyard(BenchEnv(redis=fake_redis, workdir=tmp_path))


def _shape(client: redis.Redis, job_id: str, queue: str) -> dict[str, Any]:
    """A job's data with its ids blanked: record fields, TTL, index entries, message."""
    record = {
        k.decode(): v.decode().replace(job_id, "ID")
        for k, v in client.hgetall(keys.job(job_id)).items()
    }
    message = json.loads(client.lindex(queue, 0) or b"{}")
    message["properties"]["delivery_tag"] = "TAG"
    message["headers"]["jobyard_enqueued_at"] = "T"  # each job's own enqueue time
    raw = json.dumps(message).replace(job_id, "ID")
    return {
        "record": {k: v for k, v in record.items() if k != "enqueued_at"},
        "ttl": round(client.ttl(keys.job(job_id)), -2),
        "recent": client.zscore(keys.RECENT, job_id) is not None,
        "recent_queue": client.zscore(keys.recent(queue), job_id) is not None,
        "message": raw,
        "keys": sorted(k.decode().replace(job_id, "ID") for k in client.keys("*")),
    }


def test_cloned_job_matches_plan_enqueue(
    redis_url: str, redis_client: redis.Redis, tmp_path: Path
) -> None:
    system = _system(redis_url, tmp_path)
    ttl = system.runtime.config.limits.result_ttl_s
    job = system.prepare("bench.noop", {}, queue="q3")
    pipe = redis_client.pipeline()
    store.plan_enqueue(pipe, job.record, job.message, result_ttl_s=ttl)
    pipe.execute()
    expected = _shape(redis_client, job.record.id, "q3")
    redis_client.flushdb()

    template = template_for(system, "q3")
    pipe = redis_client.pipeline()
    for name, args, kwargs in clone_commands(template, 3):
        getattr(pipe, name)(*args, **kwargs)
    pipe.execute()
    ids = [i.decode() for i in redis_client.zrange(keys.recent("q3"), 0, -1)]
    assert len(ids) == 3 and template.job_id not in ids
    assert redis_client.llen("q3") == 3
    first = json.loads(redis_client.lindex("q3", -1) or b"{}")
    newest = redis_client.lindex("q3", 0) or b""
    assert first["headers"]["id"] != json.loads(newest)["headers"]["id"]
    newest_id = json.loads(newest)["headers"]["id"]
    got = _shape(redis_client, newest_id, "q3")
    got["keys"] = [k for k in got["keys"] if not k.startswith("jobyard:job:") or k.endswith("ID")]
    assert got == expected
    tags = {json.loads(m)["properties"]["delivery_tag"] for m in redis_client.lrange("q3", 0, -1)}
    assert len(tags) == 3
