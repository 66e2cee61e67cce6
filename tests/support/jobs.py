"""Run built-in jobs in tests: enqueue through the real store, read records, call directly."""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import redis

from jobyard.core import keys, store
from jobyard.core.bootstrap import Runtime, bootstrap
from jobyard.core.celery_app import create_celery
from jobyard.core.context import JobContext
from jobyard.core.enqueue import EnqueueRequest, new_job_id, prepare
from jobyard.core.messages import build_message
from jobyard.core.records import JobRecord, JobState

QUIET_WORKER_ENV = {"JOBYARD_WORKER_METRICS_PORT": "0"}
"""No /metrics port: workers of tests running side by side must not collide on one."""


def start_worker(spawn: Any, queue: str, env: dict[str, str] | None = None) -> Any:
    """A real `jobyard worker --queue <queue>` process, returned once it consumes."""
    proc = spawn("worker", "--queue", queue, env={**QUIET_WORKER_ENV, **(env or {})})
    proc.wait_for_log(" ready.", timeout_s=60)
    return proc


class Jobs:
    """Producer side of one test: what the API does, minus HTTP."""

    def __init__(self, redis_url: str, config_path: Path, env: dict[str, str] | None = None):
        self.rt: Runtime = bootstrap(
            {"JOBYARD_REDIS_URL": redis_url, "JOBYARD_CONFIG": str(config_path), **(env or {})}
        )
        self.app = create_celery(self.rt.settings, self.rt.config, self.rt.registry)
        self.client = redis.Redis.from_url(redis_url)

    def enqueue(self, task: str, args: dict[str, Any], **request: Any) -> str:
        """Validate, create the record and publish the message in one transaction."""
        job = prepare(
            self.app, self.rt.config, self.rt.registry, EnqueueRequest(task, args=args, **request)
        )
        pipe = self.client.pipeline()
        store.plan_enqueue(
            pipe, job.record, job.message, result_ttl_s=self.rt.config.limits.result_ttl_s
        )
        pipe.execute()
        return job.record.id

    def enqueue_unchecked(self, task: str, args: dict[str, Any], queue: str) -> str:
        """Publish a job whose arguments skipped validation (as a foreign producer might)."""
        job_id = new_job_id()
        record = JobRecord(
            id=job_id,
            task=task,
            queue=queue,
            state=JobState.QUEUED,
            args=args,
            max_attempts=self.rt.registry.get(task).retry.max_attempts,
            enqueued_at=store.now_s(),
        )
        message = build_message(
            self.app,
            task_id=job_id,
            task_name=task,
            kwargs=args,
            queue=queue,
            priority=0,
            priority_steps=self.rt.config.broker.priority_steps,
        )
        pipe = self.client.pipeline()
        store.plan_enqueue(pipe, record, message, result_ttl_s=self.rt.config.limits.result_ttl_s)
        pipe.execute()
        return job_id

    def record(self, job_id: str) -> JobRecord:
        rec = store.parse_record(self.client.hgetall(keys.job(job_id)))
        assert rec is not None, f"no record for job {job_id}"
        return rec

    def wait(
        self,
        job_id: str,
        until: Callable[[JobRecord], bool] | None = None,
        timeout_s: float = 60,
    ) -> JobRecord:
        """Poll the record until `until` holds (default: a terminal state)."""
        check = until or (lambda r: r.state.terminal)
        deadline = time.monotonic() + timeout_s
        while True:
            rec = self.record(job_id)
            if check(rec):
                return rec
            if time.monotonic() > deadline:
                raise AssertionError(f"job {job_id} not as expected after {timeout_s} s: {rec!r}")
            time.sleep(0.02)

    def wait_state(self, job_id: str, state: JobState, timeout_s: float = 60) -> JobRecord:
        return self.wait(job_id, lambda r: r.state is state, timeout_s=timeout_s)

    def context(self, task: str, job_id: str = "job-1", attempt: int = 1) -> JobContext:
        """A context for calling a job function in the test process."""
        spec = self.rt.registry.get(task)
        return JobContext(
            job_id=job_id,
            task=task,
            queue=spec.queue,
            attempt=attempt,
            max_attempts=spec.retry.max_attempts,
            settings=self.rt.settings,
            redis=self.client,
            config=self.rt.config,
        )

    def close(self) -> None:
        self.client.close()
