"""Tracing in worker processes (one concern: traces).

Each prefork child sets up its own tracer provider when it starts (`worker_process_init`:
the batch span processor's thread does not survive a fork) and instruments Celery there;
the Celery instrumentation opens the run span of each job as a child of the `traceparent`
its message carries (put there at enqueue). Of redis-py, only the job's own client
(`JobContext.redis`, see `worker.execution.job_redis`) is traced: jobyard's bookkeeping
(kombu's polls and acks, record writes) is the same few commands for every job, and
wrapping it cost 100-250 µs per job with the sampler off. A child flushes its spans
when it exits (`worker_process_shutdown`: recycled after `max_tasks_per_child`, or at
shutdown), and the solo pool's process at `worker_shutdown`.

The SDK, the exporter and the instrumentations are imported once, in the worker's main
process (:func:`preload`): a child forked to replace a recycled one inherits them instead
of spending a quarter of a second importing them while jobs wait for it (seen here as
enqueue-to-start p99 of 50 ms and stalls near a second at 200 jobs/s).
"""

from __future__ import annotations

import importlib
from typing import Any

from celery.signals import worker_process_init, worker_process_shutdown, worker_shutdown

from jobyard.observability import tracing

PRELOADED_MODULES = (
    "opentelemetry.sdk.resources",
    "opentelemetry.sdk.trace",
    "opentelemetry.sdk.trace.export",
    "opentelemetry.instrumentation.celery",
    "opentelemetry.instrumentation.redis",
)
EXPORTER_MODULES = {
    # The OTLP exporter imports `requests` only when it is built (in each child).
    "otlp": ("opentelemetry.exporter.otlp.proto.http.trace_exporter", "requests"),
}


def preload() -> None:
    """Import what `on_process_init` needs, when tracing is on (call before forking)."""
    names = tracing.exporter_names()
    if not names:
        return
    exporters = [m for n in names for m in EXPORTER_MODULES.get(n, ())]
    for module in (*PRELOADED_MODULES, *exporters):
        importlib.import_module(module)


def on_process_init(**_: Any) -> None:
    provider = tracing.configure_tracing("worker")
    if provider is not None:
        tracing.instrument_celery(provider)


def on_process_shutdown(**_: Any) -> None:
    tracing.shutdown_tracing()


preload()
worker_process_init.connect(on_process_init, dispatch_uid="jobyard.tracing.init")
worker_process_shutdown.connect(on_process_shutdown, dispatch_uid="jobyard.tracing.shutdown")
worker_shutdown.connect(on_process_shutdown, dispatch_uid="jobyard.tracing.worker_shutdown")
