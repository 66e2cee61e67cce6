"""Every jobyard metric, defined once (the names are a contract: alert rules, dashboards).

Metric objects are created lazily, on first use, never at import: a worker must set
``PROMETHEUS_MULTIPROC_DIR`` (see :func:`enable_multiprocess`) before the first value is
created, and importing this module must not decide that for it.

Names are prefixed ``jobyard_``, carry their unit, and have bounded labels (queue, task,
outcome, schedule, route, method, status): never a job id, pod or hostname.
"""

from __future__ import annotations

import os
import threading
from collections import Counter as Counter_
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

import prometheus_client
from prometheus_client import Counter, Gauge, Histogram, values

from jobyard import __version__
from jobyard.core.records import JobRecord

JOB_DURATION_BUCKETS_S = (
    0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300, 600, 1800, 3600,
)  # fmt: skip
"""Run-duration and queue-wait buckets: from sub-second jobs to the hour-long ones."""

HTTP_DURATION_BUCKETS_S = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10)
"""API latency buckets."""

OUTCOMES = ("succeeded", "failed", "retried", "dead", "cancelled")
"""Values of the `outcome` label of `jobyard_jobs_finished_total`."""

HTTP_METHODS = frozenset({"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"})
"""Methods recorded as themselves; anything else is recorded as `other` (bounded labels)."""


# --- metrics measured from Redis at scrape time (exported by the API's /metrics) ---------


@dataclass(frozen=True)
class GaugeSpec:
    """A gauge that a custom collector builds at scrape time."""

    name: str
    documentation: str
    labels: tuple[str, ...] = ()


QUEUE_DEPTH = GaugeSpec(
    "jobyard_queue_depth", "Jobs waiting in the queue, over every priority list.", ("queue",)
)
QUEUE_OLDEST_JOB_AGE = GaugeSpec(
    "jobyard_queue_oldest_job_age_seconds",
    "Seconds the oldest waiting job has waited (ETA delay excluded); 0 when the queue is empty.",
    ("queue",),
)
QUEUE_IN_PROGRESS = GaugeSpec(
    "jobyard_queue_jobs_in_progress", "Jobs of the queue running now.", ("queue",)
)
QUEUE_DEAD_LETTERS = GaugeSpec(
    "jobyard_queue_dead_letters", "Jobs in the queue's dead-letter set.", ("queue",)
)
QUEUE_WORKERS = GaugeSpec(
    "jobyard_queue_workers", "Workers of the queue with a recent heartbeat.", ("queue",)
)
REDIS_UP = GaugeSpec("jobyard_redis_up", "1 when this scrape could read Redis, else 0.")
BEAT_LAST_TICK = GaugeSpec(
    "jobyard_beat_last_tick_timestamp_seconds", "Unix time the leading beat last ticked."
)
SCHEDULE_LAST_RUN = GaugeSpec(
    "jobyard_schedule_last_run_timestamp_seconds",
    "Unix time beat last sent the schedule (absent until its first run).",
    ("schedule",),
)
SCHEDULE_NEXT_RUN = GaugeSpec(
    "jobyard_schedule_next_run_timestamp_seconds",
    "Unix time the schedule is next due (enabled schedules only).",
    ("schedule",),
)

QUEUE_ALERT_THRESHOLDS: dict[str, GaugeSpec] = {
    "backlog_jobs": GaugeSpec(
        "jobyard_queue_alert_backlog_jobs",
        "Alert threshold: waiting jobs (queues[].alerts.backlog_jobs).",
        ("queue",),
    ),
    "oldest_job_age_s": GaugeSpec(
        "jobyard_queue_alert_oldest_job_age_seconds",
        "Alert threshold: age of the oldest waiting job (queues[].alerts.oldest_job_age_s).",
        ("queue",),
    ),
    "failure_ratio": GaugeSpec(
        "jobyard_queue_alert_failure_ratio",
        "Alert threshold: failed/finished jobs (queues[].alerts.failure_ratio).",
        ("queue",),
    ),
    "failure_min_jobs": GaugeSpec(
        "jobyard_queue_alert_failure_min_jobs",
        "Alert threshold: finished jobs before the failure ratio counts "
        "(queues[].alerts.failure_min_jobs).",
        ("queue",),
    ),
    "wait_p95_s": GaugeSpec(
        "jobyard_queue_alert_wait_p95_seconds",
        "Alert threshold: p95 queue wait (queues[].alerts.wait_p95_s).",
        ("queue",),
    ),
    "run_p95_ratio_of_soft_limit": GaugeSpec(
        "jobyard_queue_alert_run_p95_ratio",
        "Alert threshold: p95 run time as a fraction of the soft time limit "
        "(queues[].alerts.run_p95_ratio_of_soft_limit).",
        ("queue",),
    ),
}
"""`QueueAlerts` field -> the gauge that exports it."""

QUEUE_SOFT_TIME_LIMIT = GaugeSpec(
    "jobyard_queue_soft_time_limit_seconds",
    "The queue's default soft time limit (queues[].soft_time_limit_s).",
    ("queue",),
)

SCRAPE_TIME_GAUGES: tuple[GaugeSpec, ...] = (
    QUEUE_DEPTH,
    QUEUE_OLDEST_JOB_AGE,
    QUEUE_IN_PROGRESS,
    QUEUE_DEAD_LETTERS,
    QUEUE_WORKERS,
    REDIS_UP,
    BEAT_LAST_TICK,
    SCHEDULE_LAST_RUN,
    SCHEDULE_NEXT_RUN,
    *QUEUE_ALERT_THRESHOLDS.values(),
    QUEUE_SOFT_TIME_LIMIT,
)


# --- metrics owned by a process (created on first use) -----------------------------------

M = TypeVar("M")
_lock = threading.RLock()
_created: dict[str, Any] = {}


def _once(name: str, factory: Callable[[], M]) -> M:
    metric = _created.get(name)
    if metric is None:
        with _lock:
            metric = _created.get(name)
            if metric is None:
                prometheus_client.disable_created_metrics()
                metric = _created[name] = factory()
    return metric


def jobs_enqueued() -> Counter:
    """`jobyard_jobs_enqueued_total{queue,task}`: jobs accepted by a producer."""
    return _once(
        "jobyard_jobs_enqueued_total",
        lambda: Counter(
            "jobyard_jobs_enqueued_total",
            "Jobs accepted for a queue by a producer (API, beat, workflows).",
            ("queue", "task"),
        ),
    )


def jobs_finished() -> Counter:
    """`jobyard_jobs_finished_total{queue,task,outcome}`: runs ended, by outcome."""
    return _once(
        "jobyard_jobs_finished_total",
        lambda: Counter(
            "jobyard_jobs_finished_total",
            "Job runs that ended, by outcome (succeeded, failed, retried, dead, cancelled).",
            ("queue", "task", "outcome"),
        ),
    )


def job_run_duration() -> Histogram:
    """`jobyard_job_run_duration_seconds{queue,task}`: one attempt's run time."""
    return _once(
        "jobyard_job_run_duration_seconds",
        lambda: Histogram(
            "jobyard_job_run_duration_seconds",
            "Run time of one attempt (a hard-killed attempt counts its time limit).",
            ("queue", "task"),
            buckets=JOB_DURATION_BUCKETS_S,
        ),
    )


def job_queue_wait() -> Histogram:
    """`jobyard_job_queue_wait_seconds{queue,task}`: enqueued (or due) to started."""
    return _once(
        "jobyard_job_queue_wait_seconds",
        lambda: Histogram(
            "jobyard_job_queue_wait_seconds",
            "Seconds from enqueue (or from its ETA, when delayed) to the start of a run.",
            ("queue", "task"),
            buckets=JOB_DURATION_BUCKETS_S,
        ),
    )


def jobs_running() -> Gauge:
    """`jobyard_jobs_running{queue,task}`: runs in progress in this worker."""
    return _once(
        "jobyard_jobs_running",
        lambda: Gauge(
            "jobyard_jobs_running",
            "Jobs running now in this worker (all its processes).",
            ("queue", "task"),
            multiprocess_mode="livesum",
        ),
    )


def worker_info() -> Gauge:
    """`jobyard_worker_info{queue,version}`: 1 per worker process."""
    return _once(
        "jobyard_worker_info",
        lambda: Gauge(
            "jobyard_worker_info",
            "1 per running worker; count by (queue) to count workers.",
            ("queue", "version"),
            multiprocess_mode="livemax",
        ),
    )


def beat_leader() -> Gauge:
    """`jobyard_beat_leader`: 1 while this beat process leads, 0 on standby."""
    return _once(
        "jobyard_beat_leader",
        lambda: Gauge(
            "jobyard_beat_leader",
            "1 while this beat process holds the leader lease, 0 on standby.",
            multiprocess_mode="livemax",
        ),
    )


def http_requests() -> Counter:
    """`jobyard_http_requests_total{route,method,status}`."""
    return _once(
        "jobyard_http_requests_total",
        lambda: Counter(
            "jobyard_http_requests_total",
            "API requests by route template, method and status code.",
            ("route", "method", "status"),
        ),
    )


def http_request_duration() -> Histogram:
    """`jobyard_http_request_duration_seconds{route,method}`."""
    return _once(
        "jobyard_http_request_duration_seconds",
        lambda: Histogram(
            "jobyard_http_request_duration_seconds",
            "API request latency by route template and method.",
            ("route", "method"),
            buckets=HTTP_DURATION_BUCKETS_S,
        ),
    )


def build_info() -> Gauge:
    """`jobyard_build_info{version,component}`: 1."""
    return _once(
        "jobyard_build_info",
        lambda: Gauge(
            "jobyard_build_info",
            "1, labelled with the jobyard version and the component (api, worker, beat).",
            ("version", "component"),
            multiprocess_mode="livemax",
        ),
    )


# --- helpers the producers and components call -------------------------------------------


def count_enqueued(queue: str, task: str, n: int = 1) -> None:
    """Count `n` jobs of `task` accepted for `queue` (call after the enqueue committed)."""
    jobs_enqueued().labels(queue=queue, task=task).inc(n)


def count_enqueued_records(records: Iterable[JobRecord]) -> None:
    """Count the jobs of `records`, just committed by one producer call."""
    counts = Counter_((r.queue, r.task) for r in records)
    for (queue, task), n in counts.items():
        count_enqueued(queue, task, n)


def set_build_info(component: str) -> None:
    """Export `jobyard_build_info{version,component} 1` from this process."""
    build_info().labels(version=__version__, component=component).set(1)


def init_job_outcomes(queue: str, tasks: Iterable[str]) -> None:
    """Create every outcome series of `tasks` on `queue` at 0 when a worker starts.

    A counter series that first appears at 1 hides its first increase from `rate()` and
    `increase()`; on queues that scale to zero every burst starts on fresh pods, so without
    this, throughput and failure ratios would undercount.
    """
    counter = jobs_finished()
    for task in tasks:
        for outcome in OUTCOMES:
            counter.labels(queue=queue, task=task, outcome=outcome)


def set_worker_info(queue: str) -> None:
    """Export `jobyard_worker_info{queue,version} 1` from a worker's main process."""
    worker_info().labels(queue=queue, version=__version__).set(1)


def track_beat_leader(is_leader: Callable[[], bool]) -> None:
    """Export `is_leader()` as `jobyard_beat_leader` at every scrape (beat process)."""
    beat_leader().set_function(lambda: 1.0 if is_leader() else 0.0)


def http_method_label(method: str) -> str:
    """The bounded `method` label of an HTTP method."""
    upper = method.upper()
    return upper if upper in HTTP_METHODS else "other"


MULTIPROC_ENV = "PROMETHEUS_MULTIPROC_DIR"


def enable_multiprocess(directory: Path) -> None:
    """Switch this process (and the children it forks) to multiprocess mode.

    prometheus-client picks its value class from ``PROMETHEUS_MULTIPROC_DIR`` when
    `prometheus_client.values` is imported; setting the variable later is not enough, so
    the choice is made again here. Raises RuntimeError when a jobyard metric already
    exists in single-process mode (its values would never reach the directory).
    """
    with _lock:
        if _created:
            raise RuntimeError(
                "enable_multiprocess() must run before any jobyard metric is created; "
                f"already created: {', '.join(sorted(_created))}"
            )
        os.environ[MULTIPROC_ENV] = str(directory)
        values.ValueClass = values.get_value_class()


def multiprocess_enabled() -> bool:
    """True when metric values go to ``PROMETHEUS_MULTIPROC_DIR`` files."""
    return values.ValueClass is not values.MutexValue
