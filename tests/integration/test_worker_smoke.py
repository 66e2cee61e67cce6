"""A real worker process runs a job enqueued through the store, and records it."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import redis

from jobyard.core import keys, store
from jobyard.core.bootstrap import bootstrap
from jobyard.core.celery_app import create_celery
from jobyard.core.enqueue import EnqueueRequest, prepare
from tests.support.processes import wait_until

pytestmark = pytest.mark.integration


def test_noop_runs_and_its_record_succeeds(
    spawn: Any, redis_url: str, config_path: Path, redis_client: redis.Redis
) -> None:
    rt = bootstrap({"JOBYARD_REDIS_URL": redis_url, "JOBYARD_CONFIG": str(config_path)})
    app = create_celery(rt.settings, rt.config, rt.registry)
    worker = spawn("worker", "--queue", "default")
    worker.wait_for_log(" ready.")
    ids = []
    for priority in (0, 5, 9):
        job = prepare(
            app, rt.config, rt.registry, EnqueueRequest("jobyard.noop", priority=priority)
        )
        pipe = redis_client.pipeline()
        store.plan_enqueue(pipe, job.record, job.message, result_ttl_s=60)
        pipe.execute()
        ids.append(job.record.id)

    def states() -> list[bytes | None]:
        return [redis_client.hget(keys.job(i), "state") for i in ids]

    wait_until(lambda: states() == [b"succeeded"] * 3)
    assert [redis_client.hget(keys.job(i), "attempts") for i in ids] == [b"1"] * 3
    assert redis_client.zcard(keys.running("default")) == 0
    for lst in keys.queue_lists("default", rt.config.broker.priority_steps):
        assert redis_client.llen(lst) == 0
