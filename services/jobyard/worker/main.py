"""`jobyard worker --queue NAME`: one Celery worker consuming exactly one queue."""

from __future__ import annotations

import logging
import os
import time
from typing import Any

from celery.signals import worker_ready, worker_shutdown

from jobyard.core.celery_app import create_celery, worker_hostname
from jobyard.core.config import JobyardConfig
from jobyard.core.errors import UnknownQueueError
from jobyard.core.redis import sync_client
from jobyard.core.registry import Registry
from jobyard.core.settings import Settings
from jobyard.worker.heartbeat import Heartbeat, heartbeat_path

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
    # SIGTERM (Kubernetes, KEDA scale-down) starts Celery's soft shutdown: running jobs get
    # `shutdown_grace_s` to finish, then are requeued at once instead of waiting for the
    # visibility timeout.
    os.environ.setdefault("REMAP_SIGTERM", "SIGQUIT")
    import jobyard.worker.signals  # noqa: F401  (connects the handlers)

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

    worker = _soft_shutdown_worker_class(app)(
        hostname=hostname,
        queues=[queue.name],
        concurrency=concurrency or queue.concurrency,
        pool=pool,
        without_gossip=True,
        without_mingle=True,
        without_heartbeat=True,
        loglevel=settings.log_level,
        quiet=True,
    )
    worker.start()
    code = worker.exitcode
    if code:
        raise SystemExit(code)


def _soft_shutdown_worker_class(app: Any) -> Any:
    """Celery's Worker, with a soft shutdown that ends as soon as running jobs are done.

    Celery sleeps the whole `worker_soft_shutdown_timeout` once any job is running (or
    always, with `worker_enable_soft_shutdown_on_idle`); a KEDA scale-down then takes the
    full grace even for a worker whose jobs took a second. This waits only while jobs run.
    """
    from celery.worker import state

    class Worker(app.Worker):  # type: ignore[misc]
        def wait_for_soft_shutdown(self) -> None:
            timeout_s = float(self.app.conf.worker_soft_shutdown_timeout or 0)
            if timeout_s <= 0 or not state.active_requests:
                return
            log.warning(
                "soft shutdown: waiting up to %.0f s for %d running job(s)",
                timeout_s,
                len(state.active_requests),
            )
            deadline = time.monotonic() + timeout_s
            while state.active_requests and time.monotonic() < deadline:
                time.sleep(0.1)

    return Worker
