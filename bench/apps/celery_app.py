"""Bare Celery with reliable settings: the same delivery guarantees jobyard configures
(late ack, requeue on a lost worker, no prefetch, JSON, results ignored, no events)."""

from __future__ import annotations

import os

from celery import Celery

from bench.apps import stamp as stamps

QUEUE = "bench"

app = Celery("bench", broker=os.environ.get("BENCH_REDIS_URL", "redis://127.0.0.1:6379/0"))
app.conf.update(
    task_acks_late=True,
    task_reject_on_worker_lost=True,
    worker_prefetch_multiplier=1,
    worker_disable_prefetch=True,
    task_serializer="json",
    accept_content=["json"],
    result_backend=None,
    task_ignore_result=True,
    task_send_sent_event=False,
    worker_send_task_events=False,
    worker_enable_remote_control=False,
    task_default_queue=QUEUE,
    broker_transport_options={"visibility_timeout": 3600},
    broker_connection_retry_on_startup=True,
)


@app.task(name="bench.noop")
def noop() -> None:
    """Do nothing."""


@app.task(name="bench.stamp")
def stamp(t0: float) -> None:
    """Record the enqueue-to-start time."""
    stamps.record(t0)
