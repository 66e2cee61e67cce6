"""The worker's message consumer: runs only jobyard's registered jobs, and files every
message Celery refuses as a dead letter (`worker.refusals`).

Celery drops, without running or redelivering it, a message it cannot run: content it
does not accept (pickle: jobyard accepts JSON only), a body that does not decode, a task
it does not know (a worker older than the producer), or an envelope without task headers.
Celery also registers tasks of its own on every app (`celery.backend_cleanup`,
`celery.group`, `celery.chord_unlock`, ...) and would run a message naming one: the
consumer knows only the tasks in jobyard's registry, so those are unknown tasks too.
Each refusal becomes a dead letter with the reason before Celery acknowledges it.
"""

from __future__ import annotations

import logging
from typing import Any

from celery.worker.consumer import Consumer as CeleryConsumer

from jobyard.core.redis import sync_client
from jobyard.worker.refusals import RefusedMessage, as_bytes, refuse, shown

log = logging.getLogger("jobyard.worker")


def _started_by_delivery(message: Any) -> bool:
    """Whether the start script already ran for this delivery (`jobyard.worker.delivery`
    folds it into the write that files the message as unacknowledged)."""
    headers = getattr(message, "headers", None)
    return isinstance(headers, dict) and "jobyard_attempts" in headers


def refuse_message(app: Any, message: Any, error_type: str, reason: str) -> str | None:
    """File a message Celery refused as a dead letter (see `worker.refusals`)."""
    headers = message.headers if isinstance(message.headers, dict) else {}
    properties = message.properties if isinstance(message.properties, dict) else {}
    limits = app.jobyard_config.limits
    body = message.body
    return refuse(
        sync_client(app.jobyard_settings.redis_url),
        RefusedMessage(
            queue=app.jobyard_queue or app.conf.task_default_queue,
            first_bytes=as_bytes(body) if isinstance(body, (bytes, str)) else b"",
            task=headers.get("task"),
            message_id=headers.get("id") or properties.get("correlation_id"),
            started_here=_started_by_delivery(message),
        ),
        error_type,
        reason,
        record_ttl_s=max(limits.result_ttl_s, limits.dead_letter_ttl_s),
    )


class Consumer(CeleryConsumer):  # type: ignore[misc]
    """Celery's consumer, knowing only jobyard's jobs; every refusal is a dead letter."""

    def update_strategies(self) -> None:
        super().update_strategies()
        registry = self.app.jobyard_registry
        for name in [name for name in self.strategies if name not in registry]:
            # Celery's built-in tasks: a message naming one is an unknown task.
            del self.strategies[name]

    def on_decode_error(self, message: Any, exc: Exception) -> None:
        refuse_message(
            self.app,
            message,
            "MessageRefused",
            f"the worker could not decode the message body ({message.content_type}): {exc}",
        )
        super().on_decode_error(message, exc)

    def on_unknown_message(self, body: Any, message: Any) -> None:
        refuse_message(
            self.app,
            message,
            "MessageRefused",
            "the message has no task headers (not a Celery task message)",
        )
        super().on_unknown_message(body, message)

    def on_unknown_task(self, body: Any, message: Any, exc: Exception) -> None:
        headers = message.headers if isinstance(message.headers, dict) else {}
        name = headers.get("task")
        if isinstance(name, str) and name in self.app.tasks:
            refuse_message(
                self.app,
                message,
                "MessageRefused",
                f"task {shown(name)} is not a jobyard job: the worker runs only registered jobs",
            )
        else:
            refuse_message(
                self.app,
                message,
                "UnknownTask",
                f"the worker does not know task {shown(name)}; retry the dead letter once "
                "workers that register it run",
            )
        if not isinstance(headers.get("id"), str):
            # Celery would look for the id in the body (protocol 1) and fail on it.
            log.error("refused a message of unknown task %s without an id", shown(name))
            message.reject_log_error(log, self.connection_errors)
            return
        super().on_unknown_task(body, message, exc)

    def on_invalid_task(self, body: Any, message: Any, exc: Exception) -> None:
        refuse_message(
            self.app, message, "MessageRefused", f"the worker refused the message: {exc}"
        )
        super().on_invalid_task(body, message, exc)
