"""Job metrics from Celery's task signals (one concern: metrics).

Outcomes are classified from what `worker.execution` and `signals.records` leave on the
request (`jobyard_start`, `jobyard_outcome`):

- `succeeded`: `task_success`;
- `retried`: `task_retry`, or a run lost with its process (`WorkerLostError`: requeued);
- `dead` / `failed`: `task_failure`, by `request.jobyard_outcome` (`failed` by default,
  and for a hard time limit, which Celery reports from the worker's main process);
- `cancelled`: a job cancelled while queued, skipped when its message arrives.

A redelivery of a job that already succeeded is skipped and not counted again.
"""

from __future__ import annotations

import os
import time
from collections import deque
from datetime import datetime
from typing import Any

from billiard.exceptions import WorkerLostError
from celery import Task
from celery.exceptions import TimeLimitExceeded
from celery.signals import (
    task_failure,
    task_postrun,
    task_prerun,
    task_retry,
    task_success,
    worker_process_shutdown,
)
from prometheus_client import multiprocess

from jobyard.core import keys
from jobyard.core.messages import ENQUEUED_AT_HEADER, ETA_HEADER
from jobyard.core.redis import sync_client
from jobyard.observability import metrics
from jobyard.worker.execution import queue_of
from jobyard.worker.signals import records  # noqa: F401  (its handlers connect first)

_T0 = "jobyard_metrics_t0"
_RUNNING = "jobyard_metrics_running"
_SKIPPED_STARTS = ("cancelled", "succeeded")


def _text(raw: bytes | str | None) -> str | None:
    return raw.decode() if isinstance(raw, bytes) else raw


def _is_jobyard(task: Any) -> bool:
    return isinstance(task, Task) and hasattr(task.app, "jobyard_settings")


def _float(value: Any) -> float | None:
    if value is None:
        return None
    try:
        return float(value)
    except (TypeError, ValueError):
        return None


def _celery_eta(value: Any) -> float | None:
    if isinstance(value, datetime):
        return value.timestamp()
    if isinstance(value, str) and value:
        try:
            return datetime.fromisoformat(value).timestamp()
        except ValueError:
            return None
    return None


def due_at(request: Any) -> float | None:
    """When the job became runnable: max(enqueued, jobyard ETA, Celery ETA); None if unknown."""
    candidates = [
        _float(getattr(request, ENQUEUED_AT_HEADER, None)),
        _float(getattr(request, ETA_HEADER, None)),
        _celery_eta(getattr(request, "eta", None)),
    ]
    known = [c for c in candidates if c is not None]
    return max(known) if known else None


def _labels(task: Task) -> tuple[str, str]:
    return queue_of(task), task.name


class _Series:
    """The labelled series of one (queue, task), looked up once per process."""

    __slots__ = ("finished", "queue", "run", "running", "task", "wait")

    def __init__(self, queue: str, task: str) -> None:
        self.queue, self.task = queue, task
        self.running = metrics.jobs_running().labels(queue=queue, task=task)
        self.wait = metrics.job_queue_wait().labels(queue=queue, task=task)
        self.run = metrics.job_run_duration().labels(queue=queue, task=task)
        self.finished: dict[str, Any] = {}

    def finished_total(self, outcome: str) -> Any:
        child = self.finished.get(outcome)
        if child is None:
            child = self.finished[outcome] = metrics.jobs_finished().labels(
                queue=self.queue, task=self.task, outcome=outcome
            )
        return child


_series_by_labels: dict[tuple[int, str, str], _Series] = {}


def _series(task: Task) -> _Series:
    queue, name = _labels(task)
    # Keyed by pid too: a forked child must not write through its parent's value objects.
    key = (os.getpid(), queue, name)
    series = _series_by_labels.get(key)
    if series is None:
        series = _series_by_labels[key] = _Series(queue, name)
    return series


def _run_s(task: Task) -> float | None:
    t0 = getattr(task.request, _T0, None)
    return None if t0 is None else time.perf_counter() - t0


def _finished(task: Task, outcome: str) -> None:
    series = _series(task)
    series.finished_total(outcome).inc()
    run_s = _run_s(task)
    if run_s is not None:
        series.run.observe(run_s)


def on_prerun(sender: Any = None, task: Any = None, **_: Any) -> None:
    if not _is_jobyard(task):
        return
    request = task.request
    series = _series(task)
    series.running.inc()
    setattr(request, _RUNNING, True)
    if getattr(request, "jobyard_start", None) in _SKIPPED_STARTS:
        return
    setattr(request, _T0, time.perf_counter())
    due = due_at(request)
    if due is not None:
        series.wait.observe(max(0.0, time.time() - due))


def on_success(sender: Any = None, **_: Any) -> None:
    if _is_jobyard(sender):
        _finished(sender, "succeeded")


def on_retry(sender: Any = None, **_: Any) -> None:
    if _is_jobyard(sender):
        _finished(sender, "retried")


def on_failure(
    sender: Any = None, task_id: str = "", exception: BaseException | None = None, **_: Any
) -> None:
    if not _is_jobyard(sender):
        return
    own_request = sender.request.id == task_id
    if isinstance(exception, WorkerLostError | TimeLimitExceeded):
        # Reported by the worker's main process: the run's process is gone. Its request
        # there may not be the job's, so the queue is read from the record.
        if own_request:
            queue = queue_of(sender)
        else:
            raw = sync_client(sender.app.jobyard_settings.redis_url).hget(
                keys.job(task_id), "queue"
            )
            queue = _text(raw) or queue_of(sender)
        labels = {"queue": queue, "task": sender.name}
        if isinstance(exception, WorkerLostError):
            outcome = "retried" if sender.reject_on_worker_lost else "failed"
            metrics.jobs_finished().labels(outcome=outcome, **labels).inc()
        elif _first_hard_limit_report(task_id):
            # Celery reports a hard time limit twice (`on_failure`, then `on_timeout`).
            metrics.jobs_finished().labels(outcome="failed", **labels).inc()
            limit_s = _float(exception.args[0]) if exception.args else None
            if limit_s is not None:
                metrics.job_run_duration().labels(**labels).observe(limit_s)
        return
    if own_request:
        _finished(sender, getattr(sender.request, "jobyard_outcome", None) or "failed")


_hard_limit_ids: deque[str] = deque(maxlen=256)


def _first_hard_limit_report(task_id: str) -> bool:
    if task_id in _hard_limit_ids:
        return False
    _hard_limit_ids.append(task_id)
    return True


def on_postrun(sender: Any = None, task: Any = None, state: Any = None, **_: Any) -> None:
    if not _is_jobyard(task):
        return
    request = task.request
    if getattr(request, _RUNNING, False):
        _series(task).running.dec()
        setattr(request, _RUNNING, False)
    if getattr(request, "jobyard_start", None) == "cancelled":
        _series(task).finished_total("cancelled").inc()


def on_process_shutdown(pid: int | None = None, **_: Any) -> None:
    """A prefork child exits: its live gauges (jobs running) stop counting."""
    if metrics.multiprocess_enabled():
        multiprocess.mark_process_dead(pid or os.getpid())


task_prerun.connect(on_prerun, dispatch_uid="jobyard.metrics.prerun")
task_success.connect(on_success, dispatch_uid="jobyard.metrics.success")
task_retry.connect(on_retry, dispatch_uid="jobyard.metrics.retry")
task_failure.connect(on_failure, dispatch_uid="jobyard.metrics.failure")
task_postrun.connect(on_postrun, dispatch_uid="jobyard.metrics.postrun")
worker_process_shutdown.connect(on_process_shutdown, dispatch_uid="jobyard.metrics.shutdown")
