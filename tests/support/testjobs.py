"""Jobs for API and worker tests; load with `JOBYARD_JOB_MODULES=tests.support.testjobs`.

- `tests.flaky`: fails `failures` times, then succeeds (count kept in Redis by job id)
- `tests.always_fails`: always raises a retryable error (ends dead)
- `tests.sleep`: sleeps, reporting progress every `step_s`; stops when cancel is requested
- `tests.record_effect`: appends its job id to a file (counts executions)
- `tests.careless`: logs and fails with its secret-bearing arguments in the text (ends dead)
"""

from __future__ import annotations

import logging
import time
from pathlib import Path
from typing import Annotated

from pydantic import BaseModel, ConfigDict, Field

from jobyard.core.context import JobContext
from jobyard.core.registry import RetryableError, RetryPolicy, job

FAST_RETRY = RetryPolicy(max_attempts=3, backoff_s=0.2, backoff_max_s=0.5, jitter=False)


def flaky_counter_key(job_id: str) -> str:
    """The Redis counter of `tests.flaky`'s runs (test-only key)."""
    return f"jobyard:test:flaky:{job_id}"


class FlakyArgs(BaseModel):
    model_config = ConfigDict(extra="forbid")
    failures: Annotated[int, Field(ge=0)] = 1
    retry_delay_s: Annotated[float, Field(gt=0, le=5)] | None = None
    """Overrides the policy's backoff (to keep a job in `retrying` for a while)."""


@job("tests.flaky", args=FlakyArgs, queue="default", retry=FAST_RETRY)
def flaky(ctx: JobContext, args: FlakyArgs) -> dict[str, int]:
    """Fail `failures` times, then succeed."""
    runs = int(ctx.redis.incr(flaky_counter_key(ctx.job_id)))
    if runs <= args.failures:
        raise RetryableError(f"flaky failure {runs} of {args.failures}", delay_s=args.retry_delay_s)
    return {"runs": runs, "attempt": ctx.attempt}


class NoArgs(BaseModel):
    model_config = ConfigDict(extra="forbid")


@job(
    "tests.always_fails",
    args=NoArgs,
    queue="default",
    retry=RetryPolicy(max_attempts=2, backoff_s=0.2, backoff_max_s=0.2, jitter=False),
)
def always_fails(ctx: JobContext, args: NoArgs) -> None:
    """Raise a retryable error on every attempt."""
    raise RetryableError(f"always fails (attempt {ctx.attempt})")


class SleepArgs(BaseModel):
    model_config = ConfigDict(extra="forbid")
    seconds: Annotated[float, Field(ge=0, le=60)]
    step_s: Annotated[float, Field(gt=0, le=5)] = 0.1


@job("tests.sleep", args=SleepArgs, queue="default", retry=RetryPolicy(max_attempts=1))
def sleep(ctx: JobContext, args: SleepArgs) -> dict[str, object]:
    """Sleep `seconds`, reporting progress every `step_s`; stop early on cancel."""
    steps = max(1, round(args.seconds / args.step_s))
    for step in range(steps):
        ctx.raise_if_cancelled(f"cancelled at step {step} of {steps}")
        ctx.progress(step, steps, f"step {step} of {steps}")
        time.sleep(args.step_s)
    ctx.progress(steps, steps, "done")
    return {"steps": steps}


class EffectArgs(BaseModel):
    model_config = ConfigDict(extra="forbid")
    path: str


@job("tests.record_effect", args=EffectArgs, queue="default", retry=RetryPolicy(max_attempts=1))
def record_effect(ctx: JobContext, args: EffectArgs) -> None:
    """Append this job's id to the file `path`."""
    with Path(args.path).open("a", encoding="utf-8") as f:
        f.write(ctx.job_id + "\n")


class CarelessArgs(BaseModel):
    model_config = ConfigDict(extra="forbid")
    api_token: str
    url: str
    headers: dict[str, str] = Field(default_factory=dict)


@job(
    "tests.careless",
    args=CarelessArgs,
    queue="default",
    retry=RetryPolicy(max_attempts=1),
)
def careless(ctx: JobContext, args: CarelessArgs) -> None:
    """What careless job code does: log and raise with credentials in the text."""
    logging.getLogger("tests.careless").warning(
        "calling %s with Authorization: %s",
        args.url,
        args.headers.get("Authorization"),
        extra={"api_token": args.api_token, "target": args.url},
    )
    raise RetryableError(
        f"GET {args.url}?token={args.api_token} failed; sent "
        f"Authorization: {args.headers.get('Authorization')} and {args.model_dump()}"
    )
