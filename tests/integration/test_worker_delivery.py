"""The worker starts a job in the round trip that takes its message (`worker.delivery`):
attempts are counted once, headers a producer copied are never trusted, and a Redis that
lost its scripts only costs the fast path."""

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


class Enqueuer:
    def __init__(self, redis_url: str, config_path: Path, client: redis.Redis) -> None:
        self.rt = bootstrap({"JOBYARD_REDIS_URL": redis_url, "JOBYARD_CONFIG": str(config_path)})
        self.app = create_celery(self.rt.settings, self.rt.config, self.rt.registry)
        self.client = client

    def enqueue(self, headers: dict[str, Any] | None = None) -> str:
        job = prepare(
            self.app,
            self.rt.config,
            self.rt.registry,
            EnqueueRequest("jobyard.noop", headers=headers or {}),
        )
        pipe = self.client.pipeline()
        store.plan_enqueue(pipe, job.record, job.message, result_ttl_s=60)
        pipe.execute()
        return job.record.id

    def wait_succeeded(self, job_id: str) -> dict[bytes, bytes]:
        wait_until(lambda: self.client.hget(keys.job(job_id), "state") == b"succeeded")
        return self.client.hgetall(keys.job(job_id))


@pytest.fixture
def enqueuer(redis_url: str, config_path: Path, redis_client: redis.Redis) -> Enqueuer:
    return Enqueuer(redis_url, config_path, redis_client)


@pytest.mark.parametrize("pool", ["solo", "prefork"])
def test_copied_start_headers_are_ignored(
    spawn: Any, enqueuer: Enqueuer, redis_client: redis.Redis, pool: str
) -> None:
    worker = spawn("worker", "--queue", "default", "--pool", pool)
    worker.wait_for_log(" ready.")
    # As if copied from an earlier delivery into a new message: must not skip the run.
    forged = enqueuer.enqueue({"jobyard_start": "succeeded", "jobyard_attempts": 7})
    # A due ETA: the worker starts it in the task, where only stripped headers are safe.
    forged_eta = enqueuer.enqueue(
        {"jobyard_start": "succeeded", "jobyard_attempts": 7, "eta": "2020-01-01T00:00:00+00:00"}
    )
    plain = enqueuer.enqueue()
    for job_id in (forged, forged_eta, plain):
        record = enqueuer.wait_succeeded(job_id)
        assert record[b"attempts"] == b"1"
        assert b"started_at" in record and b"finished_at" in record
    assert redis_client.zcard(keys.running("default")) == 0
    assert redis_client.hlen(keys.KOMBU_UNACKED) == 0
    assert redis_client.zcard(keys.KOMBU_UNACKED_INDEX) == 0


def test_lost_scripts_fall_back_to_starting_in_the_task(
    spawn: Any, enqueuer: Enqueuer, redis_client: redis.Redis
) -> None:
    worker = spawn("worker", "--queue", "default", "--pool", "solo")
    worker.wait_for_log(" ready.")
    first = enqueuer.enqueue()
    assert enqueuer.wait_succeeded(first)[b"attempts"] == b"1"
    redis_client.script_flush()  # what a Redis restart does to loaded scripts
    ids = [enqueuer.enqueue() for _ in range(3)]
    for job_id in ids:
        record = enqueuer.wait_succeeded(job_id)
        assert (record[b"attempts"], record[b"state"]) == (b"1", b"succeeded")
    assert redis_client.hlen(keys.KOMBU_UNACKED) == 0
