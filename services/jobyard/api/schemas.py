"""Request and response bodies of the HTTP API."""

from __future__ import annotations

import hashlib
import json
from typing import Annotated, Any, Literal

from pydantic import AwareDatetime, BaseModel, ConfigDict, Field, field_validator
from pydantic_core import PydanticCustomError

from jobyard.api.json_values import find_lone_surrogate
from jobyard.core.enqueue import EnqueueRequest
from jobyard.core.queues import QueueStats
from jobyard.core.records import JobRecord
from jobyard.core.workflows import MAX_MEMBERS, WorkflowState, WorkflowType

IDEMPOTENCY_KEY_PATTERN = r"^[\x20-\x7e]{1,200}$"
"""1..200 printable ASCII characters."""
IDEMPOTENCY_KEY_HEADER = "Idempotency-Key"

LONE_SURROGATE = "lone_surrogate"
"""Error type of text that is not valid Unicode; its `ctx["at"]` locates it within the field."""


class _Request(BaseModel):
    model_config = ConfigDict(extra="forbid")


class JobIn(_Request):
    """One job to enqueue."""

    task: Annotated[str, Field(min_length=1, max_length=200)]
    """A registered task name (`GET /v1/tasks`)."""
    args: dict[str, Any] = Field(default_factory=dict)
    """Arguments, validated against the task's argument schema."""
    queue: Annotated[str, Field(min_length=1, max_length=100)] | None = None
    """Overrides the task's default queue."""
    priority: Annotated[int, Field(strict=True, ge=0, le=9)] | None = None
    """0..9, Celery-on-Redis semantics: 0 is the most urgent. Default: the queue's.
    An integer: `true`, `1.0` or `"1"` are refused, not read as 1."""
    delay_s: Annotated[float, Field(ge=0, allow_inf_nan=False)] | None = None
    """Run no earlier than this many seconds from now (exclusive with `eta`)."""
    eta: AwareDatetime | None = None
    """Run no earlier than this RFC 3339 time (with a UTC offset)."""

    @field_validator("args", mode="before")
    @classmethod
    def _valid_unicode(cls, value: Any) -> Any:
        """Refuse a lone surrogate (`"\\ud800"`) in any string or key of `args`: it would
        be accepted here and fail when the job is stored or run."""
        found = find_lone_surrogate(value)
        if found is not None:
            at, what = found
            raise PydanticCustomError(
                LONE_SURROGATE,
                "{what}: text must be valid Unicode (a surrogate pair, never half of one)",
                {"what": what, "at": at},
            )
        return value

    def to_request(self, idempotency_key: str | None = None) -> EnqueueRequest:
        return EnqueueRequest(
            task=self.task,
            args=self.args,
            queue=self.queue,
            priority=self.priority,
            delay_s=self.delay_s,
            eta=self.eta.timestamp() if self.eta is not None else None,
            idempotency_key=idempotency_key,
        )

    def fingerprint(self) -> str:
        """Identifies the request's content (an `Idempotency-Key` must not change it)."""
        canonical = json.dumps(self.model_dump(mode="json"), sort_keys=True, ensure_ascii=True)
        return hashlib.sha256(canonical.encode("ascii")).hexdigest()


class BatchIn(_Request):
    """Jobs to enqueue together: all of them or none."""

    jobs: Annotated[list[JobIn], Field(min_length=1)]
    """1 to `limits.max_batch_size` jobs."""


class JobList(BaseModel):
    """Jobs, newest first."""

    jobs: list[JobRecord]


class WorkflowIn(_Request):
    """A chain (one after another) or a group (all at once) of jobs."""

    type: WorkflowType
    jobs: Annotated[list[JobIn], Field(min_length=1, max_length=MAX_MEMBERS)]


class WorkflowOut(BaseModel):
    """A workflow and its members, in order."""

    id: str
    type: WorkflowType
    state: WorkflowState
    """Derived: failed if any member failed, died or was cancelled; succeeded when every
    member did; else running."""
    created_at: float
    jobs: list[JobRecord]


class QueueList(BaseModel):
    queues: list[QueueStats]


class TaskInfo(BaseModel):
    """A registered job type."""

    name: str
    queue: str
    description: str
    args_schema: dict[str, Any]
    """JSON schema of the arguments."""
    max_attempts: int
    soft_time_limit_s: float | None
    """The task's own limit, else its default queue's."""
    time_limit_s: float | None
    idempotent: bool


class TaskList(BaseModel):
    tasks: list[TaskInfo]


class ScheduleInfo(BaseModel):
    """A configured periodic job."""

    name: str
    task: str
    cron: str | None
    interval_s: float | None
    queue: str | None
    missed: Literal["skip", "run-once"]
    enabled: bool
    last_run_at: float | None
    """Unix due time of the last run beat dealt with (sent, or skipped as missed); null if
    beat has not seen the schedule yet."""
    next_run_at: float
    """Unix time of the next run."""


class ScheduleList(BaseModel):
    schedules: list[ScheduleInfo]


class DeadLetterList(BaseModel):
    """Dead jobs, newest death first."""

    dead_letters: list[JobRecord]


class RetriedCount(BaseModel):
    retried: int
    skipped: int = 0
    """Dead jobs left in place because they can no longer be enqueued as they were."""


class PurgedCount(BaseModel):
    purged: int


class Health(BaseModel):
    status: Literal["ok"] = "ok"
