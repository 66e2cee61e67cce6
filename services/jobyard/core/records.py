"""The job record: one Redis hash per job, and its typed view."""

from __future__ import annotations

import json
from enum import StrEnum
from typing import Any

from pydantic import BaseModel, Field, SerializationInfo, field_serializer, field_validator

from jobyard.core.redaction import redact_text, redact_value

STORE_CONTEXT = {"store": True}
"""Serialisation context of a record written to Redis: arguments kept as given (retries
republish them); every other serialisation (API answers, CLI output) redacts them."""


class JobState(StrEnum):
    """Where a job is in its life."""

    QUEUED = "queued"
    SCHEDULED = "scheduled"
    STARTED = "started"
    RETRYING = "retrying"
    SUCCEEDED = "succeeded"
    FAILED = "failed"
    CANCELLED = "cancelled"
    DEAD = "dead"

    @property
    def terminal(self) -> bool:
        return self in TERMINAL_STATES


TERMINAL_STATES = frozenset(
    {JobState.SUCCEEDED, JobState.FAILED, JobState.CANCELLED, JobState.DEAD}
)
CANCELLABLE_STATES = frozenset({JobState.QUEUED, JobState.SCHEDULED, JobState.RETRYING})


class Progress(BaseModel):
    """What a running job last reported."""

    current: float
    total: float | None = None
    message: str | None = None


class JobError(BaseModel):
    """Why an attempt or the job failed (credentials in the message are masked)."""

    type: str
    message: str

    @field_validator("message")
    @classmethod
    def _redacted(cls, value: str) -> str:
        return redact_text(value)


class JobRecord(BaseModel):
    """A job as the API shows it."""

    id: str
    task: str
    queue: str
    state: JobState
    args: dict[str, Any] = Field(default_factory=dict)
    priority: int = 0
    attempts: int = 0
    max_attempts: int = 1
    enqueued_at: float
    eta: float | None = None
    started_at: float | None = None
    finished_at: float | None = None
    progress: Progress | None = None
    result: Any = None
    error: JobError | None = None
    idempotency_key: str | None = None
    workflow_id: str | None = None
    trace_id: str | None = None
    cancel_requested: bool = False

    @field_serializer("args")
    def _args_out(self, args: dict[str, Any], info: SerializationInfo) -> dict[str, Any]:
        if info.context and info.context.get("store"):
            return args
        redacted: dict[str, Any] = redact_value(args)
        return redacted

    def to_hash(self) -> dict[str, str]:
        """The Redis hash fields of a new record (None values are left out)."""
        out: dict[str, str] = {}
        for name, value in self.model_dump(mode="json", context=STORE_CONTEXT).items():
            if value is None or value is False:
                continue
            if name in _JSON_FIELDS:
                out[name] = json.dumps(value, separators=(",", ":"))
            else:
                out[name] = str(value) if not isinstance(value, bool) else "1"
        return out

    @classmethod
    def from_hash(cls, data: dict[str, str] | dict[bytes, bytes]) -> JobRecord:
        """Parse a record read with HGETALL."""
        fields: dict[str, Any] = {}
        for raw_key, raw_value in data.items():
            key = raw_key.decode() if isinstance(raw_key, bytes) else raw_key
            value = raw_value.decode() if isinstance(raw_value, bytes) else raw_value
            if key not in cls.model_fields:
                continue
            if key in _JSON_FIELDS:
                fields[key] = json.loads(value)
            elif key == "cancel_requested":
                fields[key] = value == "1"
            else:
                fields[key] = value
        return cls.model_validate(fields)


_JSON_FIELDS = frozenset({"args", "progress", "result", "error"})


def dumps(value: Any) -> str:
    """Compact JSON as stored in record fields."""
    return json.dumps(value, separators=(",", ":"), default=str)
