"""Turning an enqueue request into a job record and its Celery message."""

from __future__ import annotations

import uuid
from dataclasses import dataclass, field
from typing import Any

from celery import Celery

from jobyard.core.config import JobyardConfig
from jobyard.core.errors import UnknownQueueError
from jobyard.core.messages import ENQUEUED_AT_HEADER, ETA_HEADER, BuiltMessage, build_message
from jobyard.core.records import JobRecord, JobState
from jobyard.core.registry import Registry
from jobyard.core.store import now_s
from jobyard.observability.tracing import trace_headers, trace_id_from_traceparent


class EnqueueError(ValueError):
    """A request that cannot be enqueued; `field` names the offending input."""

    def __init__(self, field: str, message: str) -> None:
        super().__init__(message)
        self.field = field


@dataclass
class EnqueueRequest:
    """What a producer asks for."""

    task: str
    args: dict[str, Any] = field(default_factory=dict)
    queue: str | None = None
    priority: int | None = None
    delay_s: float | None = None
    eta: float | None = None
    """Unix time; exclusive with `delay_s`."""
    idempotency_key: str | None = None
    job_id: str | None = None
    workflow_id: str | None = None
    trace_id: str | None = None
    headers: dict[str, Any] = field(default_factory=dict)
    root_id: str | None = None
    parent_id: str | None = None
    group_id: str | None = None
    chain: list[dict[str, Any]] | None = None
    """Celery canvas fields of a workflow member's message (see `core.workflows`)."""


@dataclass
class PreparedJob:
    record: JobRecord
    message: BuiltMessage


def new_job_id() -> str:
    return str(uuid.uuid4())


def prepare(
    app: Celery,
    config: JobyardConfig,
    registry: Registry,
    req: EnqueueRequest,
    *,
    now: float | None = None,
    tracing: dict[str, str] | None = None,
) -> PreparedJob:
    """Validate `req` and build its record and message.

    `tracing`: the trace headers of the current span, when the caller (a batch) already
    has them; read here otherwise.

    Raises UnknownTaskError, UnknownQueueError, pydantic's ValidationError (arguments) or
    EnqueueError.
    """
    spec = registry.get(req.task)
    args = spec.validate_args(req.args, context=config.args_context())
    queue_name = req.queue or spec.queue
    try:
        queue = config.queue(queue_name)
    except KeyError:
        raise UnknownQueueError(queue_name, config.queue_names) from None
    priority = queue.default_priority if req.priority is None else req.priority
    if not 0 <= priority <= 9:
        raise EnqueueError(
            "priority", f"priority must be 0..9 (0 is the most urgent), got {priority}"
        )
    t = now_s() if now is None else now
    if req.delay_s is not None and req.eta is not None:
        raise EnqueueError("delay_s", "give either delay_s or eta, not both")
    eta = req.eta if req.eta is not None else (t + req.delay_s if req.delay_s else None)
    if eta is not None:
        if eta - t > config.limits.max_delay_s:
            raise EnqueueError(
                "eta" if req.eta is not None else "delay_s",
                f"a job may be scheduled at most {config.limits.max_delay_s} s ahead",
            )
        if eta <= t:
            eta = None
    job_id = req.job_id or new_job_id()
    soft = spec.soft_time_limit_s or queue.soft_time_limit_s
    hard = spec.time_limit_s or queue.time_limit_s
    payload_args = args.model_dump(mode="json")
    # The current span (the API request, a beat tick, a running job) continues in the run.
    if tracing is None:
        tracing = trace_headers()
    record = JobRecord(
        id=job_id,
        task=spec.name,
        queue=queue.name,
        state=JobState.SCHEDULED if eta else JobState.QUEUED,
        args=payload_args,
        priority=priority,
        max_attempts=spec.retry.max_attempts,
        enqueued_at=t,
        eta=eta,
        idempotency_key=req.idempotency_key,
        workflow_id=req.workflow_id,
        trace_id=req.trace_id or trace_id_from_traceparent(tracing.get("traceparent")),
    )
    headers: dict[str, Any] = {ENQUEUED_AT_HEADER: t, **tracing, **req.headers}
    if eta is not None:
        headers[ETA_HEADER] = eta
    message = build_message(
        app,
        task_id=job_id,
        task_name=spec.name,
        kwargs=payload_args,
        queue=queue.name,
        priority=priority,
        priority_steps=config.broker.priority_steps,
        headers=headers,
        soft_time_limit_s=soft,
        time_limit_s=hard,
        root_id=req.root_id,
        parent_id=req.parent_id,
        group_id=req.group_id,
        chain=req.chain,
    )
    return PreparedJob(record, message)
