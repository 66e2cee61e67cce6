"""The worker's message consumer: a message Celery refuses leaves its reason on the job.

Celery drops, without running or redelivering it, a message it cannot run: content it
does not accept (pickle: jobyard accepts JSON only), a body that does not decode, a task
it does not know (a worker older than the producer), or an envelope without task headers.
Its job's record would then say `queued` forever. When the message names a job whose
record still waits to run, the record becomes `dead` with the reason (a dead letter an
operator can retry once workers can run it, or purge).
"""

from __future__ import annotations

import logging
import time
from typing import Any

from celery.worker.consumer import Consumer as CeleryConsumer

from jobyard.core import keys, store
from jobyard.core.records import JobError
from jobyard.core.redis import sync_client

log = logging.getLogger("jobyard.worker")


def message_job_id(message: Any) -> str | None:
    """The job id a message names: its `id` header, else its correlation id."""
    headers = getattr(message, "headers", None) or {}
    properties = getattr(message, "properties", None) or {}
    job_id = headers.get("id") if isinstance(headers, dict) else None
    job_id = job_id or (properties.get("correlation_id") if isinstance(properties, dict) else None)
    return str(job_id) if job_id else None


def _started_by_delivery(message: Any) -> bool:
    """Whether the start script already ran for this delivery (`jobyard.worker.delivery`
    folds it into the write that files the message as unacknowledged)."""
    headers = getattr(message, "headers", None)
    return isinstance(headers, dict) and "jobyard_attempts" in headers


def refuse_record(app: Any, message: Any, error: JobError) -> bool:
    """Mark the job named by a refused message dead, if its record still waits to run."""
    job_id = message_job_id(message)
    if job_id is None:
        return False
    limits = app.jobyard_config.limits
    try:
        client = sync_client(app.jobyard_settings.redis_url)
        changed = client.eval(
            store.REFUSE_SCRIPT,
            1,
            keys.job(job_id),
            job_id,
            repr(time.time()),
            error.model_dump_json(),
            keys.dead_letters(""),
            keys.running(""),
            max(limits.result_ttl_s, limits.dead_letter_ttl_s),
            keys.pending(""),
            "1" if _started_by_delivery(message) else "0",
        )
    except Exception as exc:  # never let a record write stop the consumer
        log.warning("could not record why the message of job %s was refused: %s", job_id, exc)
        return False
    if changed:
        log.error(
            "job %s dead: its message was refused (%s)",
            job_id,
            error.message,
            extra={"job_id": job_id, "error": error.type},
        )
    return bool(changed)


class Consumer(CeleryConsumer):  # type: ignore[misc]
    """Celery's consumer; every refusal also updates the job's record."""

    def on_decode_error(self, message: Any, exc: Exception) -> None:
        super().on_decode_error(message, exc)
        refuse_record(
            self.app,
            message,
            JobError(
                type="MessageRefused",
                message=f"the worker could not decode the message body "
                f"({message.content_type}): {exc}",
            ),
        )

    def on_unknown_message(self, body: Any, message: Any) -> None:
        super().on_unknown_message(body, message)
        refuse_record(
            self.app,
            message,
            JobError(
                type="MessageRefused",
                message="the message has no task headers (not a Celery task message)",
            ),
        )

    def on_unknown_task(self, body: Any, message: Any, exc: Exception) -> None:
        super().on_unknown_task(body, message, exc)
        headers = message.headers if isinstance(message.headers, dict) else {}
        refuse_record(
            self.app,
            message,
            JobError(
                type="UnknownTask",
                message=f"the worker does not know task {headers.get('task')!r}; retry the "
                "dead letter once workers that register it run",
            ),
        )

    def on_invalid_task(self, body: Any, message: Any, exc: Exception) -> None:
        super().on_invalid_task(body, message, exc)
        refuse_record(
            self.app,
            message,
            JobError(type="MessageRefused", message=f"the worker refused the message: {exc}"),
        )
