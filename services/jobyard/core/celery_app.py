"""The Celery app, configured for reliable delivery, with every registered job attached."""

from __future__ import annotations

import socket
from typing import Any

from celery import Celery, Task
from kombu import Exchange, Queue

from jobyard.core.config import JobyardConfig, QueueConfig
from jobyard.core.registry import Registry
from jobyard.core.settings import Settings
from jobyard.core.tls import broker_ssl_options
from jobyard.core.transport import TRANSPORT_ALIAS


def broker_transport_options(config: JobyardConfig) -> dict[str, Any]:
    """Options every producer and consumer must agree on."""
    return {
        "visibility_timeout": config.visibility_timeout_s,
        "priority_steps": list(config.broker.priority_steps),
        "sep": "\x06\x16",
        "queue_order_strategy": "priority",
        # Restore expired unacked messages every 10 s (a short, mutex-guarded ZRANGE);
        # kombu otherwise scans only on every 10th interval.
        "unacked_restore_interval": 10,
        "unacked_restore_throttle": 1,
    }


def celery_config(
    settings: Settings, config: JobyardConfig, queue: QueueConfig | None
) -> dict[str, Any]:
    """Celery settings; `queue` is the one a worker consumes (None for producers)."""
    conf: dict[str, Any] = {
        "broker_url": settings.redis_url,
        # A stray non-JSON entry in a queue list is dropped, not fatal to the worker.
        "broker_transport": TRANSPORT_ALIAS,
        # rediss:// verifies certificates unless the URL says ssl_cert_reqs=none.
        "broker_use_ssl": broker_ssl_options(settings.redis_url),
        "broker_transport_options": broker_transport_options(config),
        "broker_connection_retry_on_startup": True,
        "broker_connection_max_retries": None,
        "result_backend": None,
        "task_ignore_result": True,
        "task_store_errors_even_if_ignored": False,
        "task_serializer": "json",
        "result_serializer": "json",
        "accept_content": ["json"],
        "result_accept_content": ["json"],
        "task_acks_late": True,
        "task_reject_on_worker_lost": True,
        "task_acks_on_failure_or_timeout": True,
        "task_track_started": False,
        "task_send_sent_event": False,
        "worker_send_task_events": False,
        "worker_enable_remote_control": False,
        "worker_prefetch_multiplier": 1,
        "worker_disable_prefetch": True,
        "worker_cancel_long_running_tasks_on_connection_loss": True,
        "worker_hijack_root_logger": False,
        "worker_redirect_stdouts": False,
        "enable_utc": True,
        "timezone": "UTC",
        "task_queues": [Queue(q.name, Exchange(""), routing_key=q.name) for q in config.queues],
        "task_default_queue": config.queues[0].name,
        "task_create_missing_queues": False,
    }
    if queue is not None:
        conf.update(
            worker_concurrency=queue.concurrency,
            worker_soft_shutdown_timeout=queue.shutdown_grace_s,
            worker_enable_soft_shutdown_on_idle=True,
            worker_max_tasks_per_child=queue.max_tasks_per_child,
            worker_max_memory_per_child=queue.max_memory_per_child_kib,
            task_soft_time_limit=queue.soft_time_limit_s,
            task_time_limit=queue.time_limit_s,
            # Refused messages (pickle, unknown task...) mark their job's record dead.
            worker_consumer="jobyard.worker.consumer:Consumer",
        )
    return conf


class JobTask(Task):  # type: ignore[misc]
    """Base of every jobyard task: late ack, requeue on lost worker, JSON only."""

    acks_late = True
    reject_on_worker_lost = True
    ignore_result = True
    typing = False
    max_retries = None
    serializer = "json"


def create_celery(
    settings: Settings,
    config: JobyardConfig,
    registry: Registry,
    *,
    queue: QueueConfig | None = None,
) -> Celery:
    """A Celery app with jobyard's settings and every registered job as a task."""
    from jobyard.worker.execution import make_task_fn

    app = Celery("jobyard", set_as_current=queue is not None)
    app.conf.update(celery_config(settings, config, queue))
    app.jobyard_settings = settings
    app.jobyard_config = config
    app.jobyard_registry = registry
    app.jobyard_queue = queue.name if queue is not None else None  # a worker's queue
    for spec in registry.specs():
        home = _queue_or_none(config, spec.queue)
        app.task(
            name=spec.name,
            bind=True,
            shared=False,  # tasks belong to this app only (one app per process and test)
            base=JobTask,
            soft_time_limit=spec.soft_time_limit_s or (home.soft_time_limit_s if home else None),
            time_limit=spec.time_limit_s or (home.time_limit_s if home else None),
        )(make_task_fn(spec))
    return app


def _queue_or_none(config: JobyardConfig, name: str) -> QueueConfig | None:
    try:
        return config.queue(name)
    except KeyError:
        return None


def worker_hostname(queue: str) -> str:
    """Celery node name of a worker of `queue` (unique per pod/process host)."""
    return f"{queue}@{socket.gethostname()}"
