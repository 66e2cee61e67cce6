"""How one job runs inside a worker child: arguments, context, retry decisions.

Record writes happen in the signal handlers (`jobyard.worker.signals`); this module only
decides, and leaves its decision on the Celery request for them to read:

- `request.jobyard_start`: what the start script found (`cancelled`, `succeeded`, ...)
- `request.jobyard_outcome`: `dead` or `failed` on a terminal failure
- `request.jobyard_next_attempt_at`: when a retry is due
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable
from typing import Any

import redis
from celery import Task
from celery.exceptions import Ignore, Retry, SoftTimeLimitExceeded
from pydantic import ValidationError

from jobyard.core.context import JobContext
from jobyard.core.redis import new_sync_client
from jobyard.core.registry import JobCancelled, JobSpec, PermanentError, RetryableError
from jobyard.observability import tracing


class JobArgumentsError(PermanentError):
    """The message's arguments do not match the job's model (never retried)."""


class JobTimeLimitError(PermanentError):
    """The job ran past its soft time limit."""


def queue_of(task: Task) -> str:
    info = task.request.delivery_info or {}
    return str(info.get("routing_key") or task.app.conf.task_default_queue)


def attempt_of(task: Task) -> int:
    """This run's attempt number (1-based).

    Counted in the job record at every start, so a run that crashed its process (and was
    redelivered without Celery counting a retry) still counts.
    """
    counted = getattr(task.request, "jobyard_attempts", None)
    return int(counted) if counted else int(task.request.retries or 0) + 1


_job_clients: dict[tuple[int, str], redis.Redis] = {}


def job_redis(url: str) -> redis.Redis:
    """The Redis client jobs get as `ctx.redis`: one per process (a forked child gets its
    own), apart from jobyard's bookkeeping client so that only the job's commands are
    traced when tracing is on."""
    key = (os.getpid(), url)
    client = _job_clients.get(key)
    if client is None:
        client = new_sync_client(url)
        provider = tracing.current_provider()
        if provider is not None:
            tracing.instrument_redis_client(client, provider)
        _job_clients[key] = client
    return client


class JobCrashedError(Exception):
    """The job was delivered more times than its attempts allow: earlier runs were lost."""


def make_task_fn(spec: JobSpec[Any]) -> Callable[..., Any]:
    """The Celery task body for `spec`."""

    def run(task: Task, *args: Any, **kwargs: Any) -> Any:
        return execute(task, spec, kwargs)

    run.__name__ = spec.name.replace(".", "_")
    run.__doc__ = spec.fn.__doc__
    return run


def execute(task: Task, spec: JobSpec[Any], kwargs: dict[str, Any]) -> Any:
    request = task.request
    start = getattr(request, "jobyard_start", None)
    if start in ("cancelled", "succeeded"):
        # Cancelled while queued, or a redelivery of a job that already succeeded.
        raise Ignore()
    attempt = attempt_of(task)
    if attempt > spec.retry.max_attempts:
        # Earlier deliveries died with their process (OOM kill, segfault, hard kill):
        # stop redelivering a poison message and dead-letter it instead.
        request.jobyard_outcome = "dead"
        raise JobCrashedError(
            f"job started {attempt} times but allows {spec.retry.max_attempts} attempt(s); "
            "earlier runs were lost with their worker process (killed or crashed)"
        )
    try:
        args = spec.validate_args(kwargs)
    except ValidationError as exc:
        request.jobyard_outcome = "failed"
        raise JobArgumentsError(
            f"arguments do not match {spec.args_model.__name__}: {exc}"
        ) from exc
    settings = task.app.jobyard_settings
    ctx = JobContext(
        job_id=request.id,
        task=spec.name,
        queue=queue_of(task),
        attempt=attempt,
        max_attempts=spec.retry.max_attempts,
        settings=settings,
        redis=job_redis(settings.redis_url),
        config=task.app.jobyard_config,
    )
    try:
        return spec.fn(ctx, args)
    except (Ignore, Retry):
        raise
    except JobCancelled:
        request.jobyard_outcome = "cancelled"
        raise
    except SoftTimeLimitExceeded as exc:
        request.jobyard_outcome = "failed"
        limit = request.timelimit[1] if request.timelimit and request.timelimit[1] else None
        limit = limit or task.soft_time_limit
        raise JobTimeLimitError(f"job exceeded its soft time limit of {limit:g} s") from exc
    except Exception as exc:
        if spec.retry.should_retry(exc, attempt):
            delay = (
                exc.delay_s if isinstance(exc, RetryableError) and exc.delay_s is not None else None
            )
            if delay is None:
                delay = spec.retry.delay_s(attempt)
            delay = min(delay, task.app.jobyard_config.broker.max_retry_backoff_s)
            request.jobyard_next_attempt_at = time.time() + delay
            raise task.retry(exc=exc, countdown=delay, max_retries=None) from exc
        retryable = not isinstance(exc, PermanentError) and (
            isinstance(exc, (RetryableError, spec.retry.retry_on))
        )
        request.jobyard_outcome = "dead" if retryable else "failed"
        raise
