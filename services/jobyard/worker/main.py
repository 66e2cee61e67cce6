"""`jobyard worker --queue NAME`: one Celery worker consuming exactly one queue."""

from __future__ import annotations

import logging
import os
from typing import Any

from celery.signals import worker_ready, worker_shutdown

from jobyard.core.celery_app import create_celery, worker_hostname
from jobyard.core.config import JobyardConfig
from jobyard.core.errors import UnknownQueueError
from jobyard.core.redis import sync_client
from jobyard.core.registry import Registry
from jobyard.core.settings import Settings
from jobyard.observability import metrics
from jobyard.observability.exposition import stop_metrics_server
from jobyard.observability.logging import configure_logging
from jobyard.worker.heartbeat import Heartbeat, heartbeat_path
from jobyard.worker.metrics_server import (
    prepare_metrics_dir,
    remove_metrics_dir,
    start_worker_metrics_server,
)
from jobyard.worker.pool import PreforkPool
from jobyard.worker.shutdown import soft_shutdown_worker_class

log = logging.getLogger("jobyard.worker")


def run_worker(
    settings: Settings,
    config: JobyardConfig,
    registry: Registry,
    queue_name: str,
    *,
    concurrency: int | None = None,
    pool: str = "prefork",
) -> None:
    """Run until a shutdown signal; SIGTERM is a soft shutdown within the queue's grace."""
    try:
        queue = config.queue(queue_name)
    except KeyError:
        raise UnknownQueueError(queue_name, config.queue_names) from None
    # SIGTERM (Kubernetes, KEDA scale-down): running jobs get `shutdown_grace_s` to finish,
    # then are requeued at once instead of waiting for the visibility timeout
    # (`jobyard.worker.shutdown`). With the remap, prefork children ignore SIGTERM and
    # Celery's cold shutdown stops them with SIGQUIT.
    os.environ.setdefault("REMAP_SIGTERM", "SIGQUIT")
    configure_logging(settings, "worker")
    # Before any metric exists: this process and its prefork children write their values
    # to files in this directory, merged by the /metrics server.
    metrics_dir = prepare_metrics_dir(settings, queue.name)
    import jobyard.worker.signals  # noqa: F401  (connects the handlers)
    from jobyard.worker import delivery

    limits = config.limits
    delivery.install(refused_ttl_s=max(limits.result_ttl_s, limits.dead_letter_ttl_s))

    metrics.set_build_info("worker")
    metrics.set_worker_info(queue.name)
    metrics.init_job_outcomes(
        queue.name, [spec.name for spec in registry.specs() if spec.queue == queue.name]
    )
    metrics_server = start_worker_metrics_server(settings, metrics_dir)

    app = create_celery(settings, config, registry, queue=queue)
    hostname = worker_hostname(queue.name)
    beat = Heartbeat(
        sync_client(settings.redis_url),
        queue.name,
        hostname,
        heartbeat_path(settings.heartbeat_dir, queue.name),
        settings.heartbeat_interval_s,
    )

    def _start_heartbeat(**_: Any) -> None:
        beat.start()

    def _stop_heartbeat(**_: Any) -> None:
        beat.stop()

    worker_ready.connect(_start_heartbeat, weak=False)
    worker_shutdown.connect(_stop_heartbeat, weak=False)

    worker = soft_shutdown_worker_class(app)(
        hostname=hostname,
        queues=[queue.name],
        concurrency=concurrency or queue.concurrency,
        pool=PreforkPool if pool == "prefork" else pool,
        without_gossip=True,
        without_mingle=True,
        without_heartbeat=True,
        loglevel=settings.log_level,
        quiet=True,
    )
    try:
        worker.start()
    finally:
        stop_metrics_server(metrics_server)
        remove_metrics_dir(metrics_dir)
    code = worker.exitcode
    if code:
        raise SystemExit(code)
