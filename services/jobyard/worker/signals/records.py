"""Keep job records current from Celery's task signals (one concern: records)."""

from __future__ import annotations

import functools
import socket
import time
from typing import Any

from billiard.exceptions import WorkerLostError
from celery import Task
from celery.exceptions import TimeLimitExceeded
from celery.signals import task_failure, task_prerun, task_retry, task_success

from jobyard.core import keys, store
from jobyard.core.records import JobError, JobRecord, JobState
from jobyard.core.redis import CommandBatch, sync_client
from jobyard.worker import delivery
from jobyard.worker.execution import queue_of

_start_scripts: dict[int, Any] = {}


def _is_jobyard(task: Any) -> bool:
    return isinstance(task, Task) and hasattr(task.app, "jobyard_settings")


def _redis(task: Task) -> Any:
    return sync_client(task.app.jobyard_settings.redis_url)


def _limits(task: Task) -> tuple[int, int]:
    limits = task.app.jobyard_config.limits
    return limits.result_ttl_s, limits.dead_letter_ttl_s


def _error(exc: BaseException) -> JobError:
    message = str(exc) or exc.__class__.__name__
    if isinstance(exc, TimeLimitExceeded):
        limit = exc.args[0] if exc.args else "?"
        message = f"job exceeded its hard time limit of {limit} s and was killed"
    return JobError(type=type(exc).__name__, message=message[:2000])


def on_prerun(sender: Any = None, task_id: str = "", task: Any = None, **_: Any) -> None:
    if not _is_jobyard(task):
        return
    client = _redis(task)
    queue = queue_of(task)
    now = time.time()
    request = task.request
    state = getattr(request, "jobyard_start", None)
    if state is not None:
        # Started when its message was delivered (`worker.delivery`).
        attempts = getattr(request, "jobyard_attempts", 0)
        had_error = getattr(request, "jobyard_had_error", True)
    else:
        script = _start_scripts.get(id(client))
        if script is None:
            script = _start_scripts[id(client)] = client.register_script(store.START_SCRIPT)
        state, attempts, had_error = script(
            keys=[keys.job(task_id), keys.running(queue)],
            args=[now, socket.gethostname(), task_id],
        )
        state = state.decode() if isinstance(state, bytes) else state
    if state == "missing":
        # Published without a record (plain Celery send_task): create one now.
        record = JobRecord(
            id=task_id,
            task=task.name,
            queue=queue,
            state=JobState.STARTED,
            args=dict(task.request.kwargs or {}),
            attempts=int(task.request.retries or 0) + 1,
            enqueued_at=now,
            started_at=now,
        )
        pipe = client.pipeline(transaction=False)
        pipe.hset(keys.job(task_id), mapping=record.to_hash())
        pipe.expire(keys.job(task_id), _limits(task)[0])
        pipe.zadd(keys.running(queue), {task_id: now})
        store.plan_index(pipe, record, result_ttl_s=_limits(task)[0])
        pipe.execute()
    task.request.jobyard_start = state
    task.request.jobyard_attempts = int(attempts) or None
    task.request.jobyard_had_error = bool(had_error)


def on_success(sender: Any = None, result: Any = None, **_: Any) -> None:
    if not _is_jobyard(sender) or getattr(sender.request, "jobyard_start", None) in (
        "cancelled",
        "succeeded",
    ):
        return
    request = sender.request
    plan = functools.partial(
        store.plan_succeeded,
        job_id=request.id,
        queue=queue_of(sender),
        result=result,
        result_ttl_s=_limits(sender)[0],
        clear_error=getattr(request, "jobyard_had_error", True),
    )
    tag = (getattr(request, "properties", None) or {}).get("delivery_tag")
    if not delivery.defer_to_ack(tag, plan):
        batch: Any = CommandBatch(_redis(sender))
        plan(batch)
        for reply in batch.execute():
            if isinstance(reply, Exception):
                raise reply


def on_retry(sender: Any = None, request: Any = None, reason: Any = None, **_: Any) -> None:
    if not _is_jobyard(sender):
        return
    exc = reason if isinstance(reason, BaseException) else Exception(str(reason))
    cause = exc.__cause__ or getattr(exc, "exc", None) or exc
    next_at = getattr(sender.request, "jobyard_next_attempt_at", time.time())
    pipe = _redis(sender).pipeline(transaction=False)
    store.plan_retrying(pipe, sender.request.id, queue_of(sender), _error(cause), next_at)
    pipe.execute()


def on_failure(
    sender: Any = None, task_id: str = "", exception: BaseException | None = None, **_: Any
) -> None:
    if not _is_jobyard(sender) or exception is None:
        return
    client = _redis(sender)
    if sender.request.id == task_id:
        queue = queue_of(sender)
    else:
        # A hard time limit is handled in the parent process, outside the job's request.
        raw = client.hget(keys.job(task_id), "queue")
        queue = raw.decode() if raw else queue_of(sender)
    pipe = client.pipeline(transaction=False)
    if isinstance(exception, WorkerLostError) and sender.reject_on_worker_lost:
        store.plan_requeued(pipe, task_id, queue, _error(exception))
    else:
        outcome = getattr(sender.request, "jobyard_outcome", None)
        result_ttl_s, dead_ttl_s = _limits(sender)
        if outcome == "cancelled":
            store.plan_cancelled(pipe, task_id, queue)
            pipe.hset(keys.job(task_id), "error", _error(exception).model_dump_json())
        else:
            store.plan_failed(
                pipe,
                task_id,
                queue,
                _error(exception),
                dead=outcome == "dead",
                result_ttl_s=result_ttl_s,
                dead_letter_ttl_s=dead_ttl_s,
            )
        if sender.request.id == task_id:
            _stop_rest_of_chain(pipe, sender.request, task_id, outcome or "failed")
    pipe.execute()


def _stop_rest_of_chain(pipe: Any, request: Any, task_id: str, outcome: str) -> None:
    """A chain stops at a job that ends without success: its later jobs will never be
    published, so their records say so instead of staying `queued` forever."""
    error = JobError(
        type="ChainStopped",
        message=f"not run: job {task_id} earlier in its chain ended {outcome}",
    )
    for sig in getattr(request, "chain", None) or ():
        later_id = (sig.get("options") or {}).get("task_id") if isinstance(sig, dict) else None
        if later_id:
            pipe.hset(
                keys.job(later_id),
                mapping={
                    "state": JobState.CANCELLED.value,
                    "finished_at": str(time.time()),
                    "error": error.model_dump_json(),
                },
            )


task_prerun.connect(on_prerun, dispatch_uid="jobyard.records.prerun")
task_success.connect(on_success, dispatch_uid="jobyard.records.success")
task_retry.connect(on_retry, dispatch_uid="jobyard.records.retry")
task_failure.connect(on_failure, dispatch_uid="jobyard.records.failure")
