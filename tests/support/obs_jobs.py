"""Jobs for the observability tests; load with `JOBYARD_JOB_MODULES=tests.support.obs_jobs`.

Each ends in one known way, so tests can assert exact outcome counts:

- `obs.ok`: succeeds (after sleeping `sleep_s`)
- `obs.flaky`: retries once (attempt 1 fails), then succeeds
- `obs.doomed`: retries once, then is dead-lettered (retryable error on every attempt)
- `obs.broken`: fails at once (permanent error)
- `obs.stubborn`: ignores its soft time limit and is killed at its hard one (1 s)
- `obs.touch`: succeeds after one Redis command of its own (`INCRBY obs:touched 1` on
  `ctx.redis`)
"""

from __future__ import annotations

import time
from typing import Annotated

from celery.exceptions import SoftTimeLimitExceeded
from pydantic import BaseModel, ConfigDict, Field

from jobyard.core.context import JobContext
from jobyard.core.registry import PermanentError, RetryableError, RetryPolicy, job

TWO_FAST_ATTEMPTS = RetryPolicy(max_attempts=2, backoff_s=0.1, backoff_max_s=0.1, jitter=False)


class SleepArgs(BaseModel):
    model_config = ConfigDict(extra="forbid")
    sleep_s: Annotated[float, Field(ge=0, le=30)] = 0.0


class NoArgs(BaseModel):
    model_config = ConfigDict(extra="forbid")


@job("obs.ok", args=SleepArgs, queue="default", retry=TWO_FAST_ATTEMPTS)
def ok(ctx: JobContext, args: SleepArgs) -> str:
    """Sleep, then succeed."""
    time.sleep(args.sleep_s)
    return "ok"


@job("obs.flaky", args=NoArgs, queue="default", retry=TWO_FAST_ATTEMPTS)
def flaky(ctx: JobContext, args: NoArgs) -> int:
    """Fail the first attempt (retryable), succeed the second."""
    if ctx.attempt == 1:
        raise RetryableError("first attempt fails", delay_s=0.1)
    return ctx.attempt


@job("obs.doomed", args=NoArgs, queue="default", retry=TWO_FAST_ATTEMPTS)
def doomed(ctx: JobContext, args: NoArgs) -> None:
    """Fail every attempt with a retryable error: retried once, then dead."""
    raise RetryableError(f"doomed attempt {ctx.attempt}", delay_s=0.1)


@job("obs.broken", args=NoArgs, queue="default", retry=TWO_FAST_ATTEMPTS)
def broken(ctx: JobContext, args: NoArgs) -> None:
    """Fail at once, never retried."""
    raise PermanentError("broken on purpose")


@job(
    "obs.stubborn",
    args=NoArgs,
    queue="default",
    retry=TWO_FAST_ATTEMPTS,
    soft_time_limit_s=0.3,
    time_limit_s=1,
)
def stubborn(ctx: JobContext, args: NoArgs) -> None:
    """Ignore the soft time limit; the worker kills the run at the hard limit."""
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        try:
            time.sleep(0.05)
        except SoftTimeLimitExceeded:
            continue


@job("obs.touch", args=NoArgs, queue="default", retry=TWO_FAST_ATTEMPTS)
def touch(ctx: JobContext, args: NoArgs) -> int:
    """One Redis command on the job's own client, then succeed."""
    return int(ctx.redis.incr("obs:touched"))
