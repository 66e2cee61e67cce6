"""`jobyard.noop`: does nothing; for smoke tests and benchmarks."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict

from jobyard.core.context import JobContext
from jobyard.core.registry import NO_RETRY, job


class NoopArgs(BaseModel):
    """No arguments (unknown ones are refused)."""

    model_config = ConfigDict(extra="forbid")


@job("jobyard.noop", args=NoopArgs, queue="default", retry=NO_RETRY, idempotent=True)
def noop(ctx: JobContext, args: NoopArgs) -> None:
    """Do nothing and succeed."""
    return None
