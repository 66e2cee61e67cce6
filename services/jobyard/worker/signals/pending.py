"""Keep the pending index current for messages a worker publishes itself (one concern).

The store adds a job to `keys.pending(queue)` when it publishes the job's message; the
worker publishes the next member of a chain (and the message of a retry) through Celery,
so it adds those here. See `jobyard.beat.orphans` for why the index exists.
"""

from __future__ import annotations

import logging
import time
from typing import Any

import redis
from celery import current_app
from celery.signals import after_task_publish

from jobyard.core import keys
from jobyard.core.redis import sync_client

log = logging.getLogger("jobyard.worker")


def on_published(
    sender: Any = None, headers: dict[str, Any] | None = None, routing_key: str = "", **_: Any
) -> None:
    app = current_app
    job_id = (headers or {}).get("id")
    if not job_id or not routing_key or not hasattr(app, "jobyard_settings"):
        return
    try:
        sync_client(app.jobyard_settings.redis_url).zadd(
            keys.pending(routing_key), {str(job_id): time.time()}
        )
    except redis.RedisError as exc:  # the message is out; only its loss would go unnoticed
        log.warning("could not index published job %s: %s", job_id, exc)


after_task_publish.connect(on_published, dispatch_uid="jobyard.pending.published")
