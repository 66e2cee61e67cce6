"""Workflows: a chain or a group of registered jobs, built with Celery's canvas.

Every member gets a pre-generated id and a job record (with `workflow_id`) written in the
same transaction as the messages that start the workflow:

- a **group** publishes every member at once;
- a **chain** publishes only its first member, whose message carries the rest in Celery's
  `chain` field: the worker publishes the next member after the previous one succeeds,
  and a member that fails (or is cancelled) stops the chain.

The workflow itself is a hash at `keys.workflow(id)`: type, creation time, member ids.
Its state is derived from its members when read.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Sequence
from dataclasses import dataclass, replace
from enum import StrEnum
from typing import Any

from celery import Celery, chain

from jobyard.core import keys, store
from jobyard.core.config import JobyardConfig
from jobyard.core.enqueue import EnqueueError, EnqueueRequest, PreparedJob, prepare
from jobyard.core.jobs import InvalidMembersError, prepare_many
from jobyard.core.records import JobRecord, JobState
from jobyard.core.registry import Registry

MAX_MEMBERS = 100


class WorkflowType(StrEnum):
    """How the members run."""

    CHAIN = "chain"
    """One after another; a failure stops the rest."""
    GROUP = "group"
    """All at once."""


class WorkflowState(StrEnum):
    """A workflow's state, derived from its members."""

    RUNNING = "running"
    SUCCEEDED = "succeeded"
    FAILED = "failed"


_FAILED_MEMBER_STATES = frozenset({JobState.FAILED, JobState.DEAD, JobState.CANCELLED})


def derive_state(members: Sequence[JobRecord | None]) -> WorkflowState:
    """Failed if any member failed, died or was cancelled; succeeded when all did; else
    running. A member whose record expired counts as neither."""
    present = [m for m in members if m is not None]
    if any(m.state in _FAILED_MEMBER_STATES for m in present):
        return WorkflowState.FAILED
    if (
        present
        and len(present) == len(members)
        and all(m.state is JobState.SUCCEEDED for m in present)
    ):
        return WorkflowState.SUCCEEDED
    return WorkflowState.RUNNING


@dataclass(frozen=True)
class PreparedWorkflow:
    """A validated workflow: its members' records and the messages that start it."""

    id: str
    type: WorkflowType
    created_at: float
    jobs: list[PreparedJob]
    """Every member, in order; only these jobs' messages are published now (for a chain,
    the first member's; the worker publishes the rest)."""
    published: list[PreparedJob]


def prepare_workflow(
    app: Celery,
    config: JobyardConfig,
    registry: Registry,
    kind: WorkflowType,
    requests: Sequence[EnqueueRequest],
    *,
    now: float,
    workflow_id: str | None = None,
) -> PreparedWorkflow:
    """Validate every member (raising :class:`InvalidMembersError`) and build the canvas."""
    wf_id = workflow_id or str(uuid.uuid4())
    errors: list[tuple[int, Exception]] = []
    if kind is WorkflowType.CHAIN:
        for index, req in enumerate(requests):
            if index > 0 and (req.delay_s is not None or req.eta is not None):
                field = "delay_s" if req.delay_s is not None else "eta"
                errors.append(
                    (index, EnqueueError(field, "only the first job of a chain may be delayed"))
                )
    group_id = wf_id if kind is WorkflowType.GROUP else None
    members = [
        replace(
            req,
            job_id=str(uuid.uuid4()),
            workflow_id=wf_id,
            group_id=group_id,
            idempotency_key=None,
        )
        for req in requests
    ]
    try:
        prepared = prepare_many(app, config, registry, members, now=now)
    except InvalidMembersError as exc:
        errors = sorted(errors + exc.errors, key=lambda e: e[0])
    if errors:
        raise InvalidMembersError(errors)
    if kind is WorkflowType.GROUP:
        # What `group(...).apply_async()` sends: every member at once, tagged with the
        # group id; written here with the records in one transaction.
        return PreparedWorkflow(wf_id, kind, now, prepared, prepared)
    signatures = [_signature(app, config, registry, job.record) for job in prepared]
    canvas = chain(*signatures, app=app)
    steps, _ = canvas.prepare_steps(
        (), {}, canvas.tasks, root_id=members[0].job_id, app=app, clone=False
    )
    steps.pop()  # the first member: published now, carrying the rest
    rest: list[dict[str, Any]] = [dict(step) for step in steps]
    first = prepare(
        app,
        config,
        registry,
        replace(members[0], root_id=members[0].job_id, chain=rest or None),
        now=now,
    )
    return PreparedWorkflow(wf_id, kind, now, [first, *prepared[1:]], [first])


def chain_continuation(
    app: Celery,
    config: JobyardConfig,
    registry: Registry,
    records: Sequence[JobRecord],
    *,
    root_id: str,
) -> list[dict[str, Any]]:
    """The `chain` field of the message of `records[0]`, a chain member followed by the
    rest of its chain in order (what `prepare_workflow` gives the first member)."""
    signatures = [_signature(app, config, registry, record) for record in records]
    canvas = chain(*signatures, app=app)
    steps, _ = canvas.prepare_steps((), {}, canvas.tasks, root_id=root_id, app=app, clone=False)
    steps.pop()  # records[0] itself
    return [dict(step) for step in steps]


def _signature(app: Celery, config: JobyardConfig, registry: Registry, record: JobRecord) -> Any:
    spec = registry.get(record.task)
    queue = config.queue(record.queue)
    return app.signature(record.task, kwargs=record.args, immutable=True).set(
        task_id=record.id,
        queue=record.queue,
        priority=record.priority,
        soft_time_limit=spec.soft_time_limit_s or queue.soft_time_limit_s,
        time_limit=spec.time_limit_s or queue.time_limit_s,
    )


def plan_create(pipe: Any, workflow: PreparedWorkflow, *, result_ttl_s: int) -> None:
    """Write every member's record and the workflow hash, and publish the start messages.

    Run on a transactional pipeline: nothing is published unless everything is written.
    """
    published = {job.record.id for job in workflow.published}
    longest_wait_s = 0.0
    for job in workflow.jobs:
        if job.record.id in published:
            store.plan_enqueue(pipe, job.record, job.message, result_ttl_s=result_ttl_s)
        else:
            _plan_record_only(pipe, job.record, result_ttl_s=result_ttl_s)
        if job.record.eta is not None:
            longest_wait_s = max(longest_wait_s, job.record.eta - job.record.enqueued_at)
    wkey = keys.workflow(workflow.id)
    pipe.hset(
        wkey,
        mapping={
            "type": workflow.type.value,
            "created_at": repr(workflow.created_at),
            "job_ids": json.dumps([job.record.id for job in workflow.jobs]),
        },
    )
    pipe.expire(wkey, result_ttl_s + int(longest_wait_s))


def _plan_record_only(pipe: Any, record: JobRecord, *, result_ttl_s: int) -> None:
    """A chain member's record: its message is published later by the worker."""
    rkey = keys.job(record.id)
    pipe.hset(rkey, mapping=record.to_hash())
    pipe.expire(rkey, result_ttl_s)
    store.plan_index(pipe, record, result_ttl_s=result_ttl_s)


@dataclass(frozen=True)
class StoredWorkflow:
    """A workflow hash as read back."""

    id: str
    type: WorkflowType
    created_at: float
    job_ids: list[str]


def parse_workflow(workflow_id: str, raw: dict[Any, Any]) -> StoredWorkflow | None:
    """The workflow read with HGETALL; None when it does not exist (or expired)."""
    if not raw:
        return None
    data = {
        (k.decode() if isinstance(k, bytes) else k): (v.decode() if isinstance(v, bytes) else v)
        for k, v in raw.items()
    }
    return StoredWorkflow(
        id=workflow_id,
        type=WorkflowType(data["type"]),
        created_at=float(data["created_at"]),
        job_ids=[str(i) for i in json.loads(data["job_ids"])],
    )
