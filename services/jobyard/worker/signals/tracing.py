"""Tracing in worker processes (one concern: traces).

Each prefork child sets up its own tracer provider when it starts (`worker_process_init`:
the batch span processor's thread does not survive a fork) and instruments Celery and
redis-py there; the Celery instrumentation opens the run span of each job as a child of
the `traceparent` its message carries (put there at enqueue). A child flushes its spans
when it exits (`worker_process_shutdown`: recycled after `max_tasks_per_child`, or at
shutdown), and the solo pool's process at `worker_shutdown`.
"""

from __future__ import annotations

from typing import Any

from celery.signals import worker_process_init, worker_process_shutdown, worker_shutdown

from jobyard.observability import tracing


def on_process_init(**_: Any) -> None:
    provider = tracing.configure_tracing("worker")
    if provider is not None:
        tracing.instrument_celery(provider)
        tracing.instrument_redis(provider)


def on_process_shutdown(**_: Any) -> None:
    tracing.shutdown_tracing()


worker_process_init.connect(on_process_init, dispatch_uid="jobyard.tracing.init")
worker_process_shutdown.connect(on_process_shutdown, dispatch_uid="jobyard.tracing.shutdown")
worker_shutdown.connect(on_process_shutdown, dispatch_uid="jobyard.tracing.worker_shutdown")
