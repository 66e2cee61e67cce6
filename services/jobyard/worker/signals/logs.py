"""Job lifecycle log events from Celery's task signals (one concern: logs).

Events, on the `jobyard.jobs` logger, each with `job_id`, `task`, `queue`, `attempt` and
`trace_id` (when traced): `job started` (at DEBUG: at INFO a job that succeeds logs one
line), `job succeeded` (`duration_s`), `job retrying`
(`error`, `retry_in_s`), `job failed` and `job dead-lettered` (`error`, `duration_s`),
`job requeued` (its process was lost), `job skipped` (cancelled while queued, or already
succeeded).
"""

from __future__ import annotations

import logging
import time
from collections import deque
from typing import Any

from billiard.exceptions import WorkerLostError
from celery import Task
from celery.exceptions import TimeLimitExceeded
from celery.signals import task_failure, task_prerun, task_retry, task_success

from jobyard.core import keys
from jobyard.core.redis import sync_client
from jobyard.observability.tracing import current_trace_id, trace_id_from_traceparent
from jobyard.worker.execution import attempt_of, queue_of
from jobyard.worker.signals import records  # noqa: F401  (its handlers connect first)

log = logging.getLogger("jobyard.jobs")

_T0 = "jobyard_logs_t0"
MAX_ERROR_CHARS = 2000


def _text(raw: bytes | str | None) -> str | None:
    return raw.decode() if isinstance(raw, bytes) else raw


def _is_jobyard(task: Any) -> bool:
    return isinstance(task, Task) and hasattr(task.app, "jobyard_settings")


def describe_error(exc: BaseException) -> str:
    """`Type: message`, bounded; a hard time limit says what happened."""
    if isinstance(exc, TimeLimitExceeded):
        limit = exc.args[0] if exc.args else "?"
        return f"TimeLimitExceeded: job exceeded its hard time limit of {limit} s and was killed"
    message = str(exc)
    text = f"{type(exc).__name__}: {message}" if message else type(exc).__name__
    return text[:MAX_ERROR_CHARS]


def _fields(task: Task, **more: Any) -> dict[str, Any]:
    request = task.request
    fields: dict[str, Any] = {
        "job_id": request.id,
        "task": task.name,
        "queue": queue_of(task),
        "attempt": attempt_of(task),
        "trace_id": current_trace_id()
        or trace_id_from_traceparent(getattr(request, "traceparent", None)),
    }
    fields.update(more)
    return fields


def _duration_s(task: Task) -> float | None:
    t0 = getattr(task.request, _T0, None)
    return None if t0 is None else round(time.perf_counter() - t0, 6)


def on_prerun(sender: Any = None, task: Any = None, **_: Any) -> None:
    if not _is_jobyard(task):
        return
    start = getattr(task.request, "jobyard_start", None)
    if start in ("cancelled", "succeeded"):
        reason = "cancelled while queued" if start == "cancelled" else "already succeeded"
        log.info("job skipped: %s", reason, extra=_fields(task))
        return
    setattr(task.request, _T0, time.perf_counter())
    if log.isEnabledFor(logging.DEBUG):
        log.debug("job started", extra=_fields(task))


def on_success(sender: Any = None, **_: Any) -> None:
    if _is_jobyard(sender):
        log.info("job succeeded", extra=_fields(sender, duration_s=_duration_s(sender)))


def on_retry(sender: Any = None, reason: Any = None, **_: Any) -> None:
    if not _is_jobyard(sender):
        return
    exc = reason if isinstance(reason, BaseException) else Exception(str(reason))
    cause = exc.__cause__ or getattr(exc, "exc", None) or exc
    next_at = getattr(sender.request, "jobyard_next_attempt_at", None)
    retry_in_s = None if next_at is None else round(max(0.0, next_at - time.time()), 3)
    log.warning(
        "job retrying",
        extra=_fields(
            sender,
            error=describe_error(cause),
            retry_in_s=retry_in_s,
            duration_s=_duration_s(sender),
        ),
    )


def on_failure(
    sender: Any = None, task_id: str = "", exception: BaseException | None = None, **_: Any
) -> None:
    if not _is_jobyard(sender) or exception is None:
        return
    if isinstance(exception, WorkerLostError | TimeLimitExceeded):
        # Reported by the worker's main process: the run's process is gone. Its request
        # there may not be the job's, so the queue is read from the record.
        if isinstance(exception, TimeLimitExceeded) and not _first_hard_limit_report(task_id):
            return  # Celery reports a hard time limit twice (`on_failure`, `on_timeout`)
        raw = sync_client(sender.app.jobyard_settings.redis_url).hget(keys.job(task_id), "queue")
        fields = {
            "job_id": task_id,
            "task": sender.name,
            "queue": _text(raw),
            "error": describe_error(exception),
        }
        if isinstance(exception, WorkerLostError) and sender.reject_on_worker_lost:
            log.warning("job requeued: its worker process was lost", extra=fields)
        else:
            log.error("job failed", extra=fields)
        return
    dead = getattr(sender.request, "jobyard_outcome", None) == "dead"
    log.error(
        "job dead-lettered" if dead else "job failed",
        extra=_fields(sender, error=describe_error(exception), duration_s=_duration_s(sender)),
    )


_hard_limit_ids: deque[str] = deque(maxlen=256)


def _first_hard_limit_report(task_id: str) -> bool:
    if task_id in _hard_limit_ids:
        return False
    _hard_limit_ids.append(task_id)
    return True


task_prerun.connect(on_prerun, dispatch_uid="jobyard.logs.prerun")
task_success.connect(on_success, dispatch_uid="jobyard.logs.success")
task_retry.connect(on_retry, dispatch_uid="jobyard.logs.retry")
task_failure.connect(on_failure, dispatch_uid="jobyard.logs.failure")
