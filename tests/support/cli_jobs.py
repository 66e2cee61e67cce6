"""Jobs the CLI tests enqueue (loaded with JOBYARD_JOB_MODULES=tests.support.cli_jobs)."""

from __future__ import annotations

import time
from typing import Any

from pydantic import BaseModel, ConfigDict

from jobyard.core.context import JobContext
from jobyard.core.registry import RetryPolicy, job


class EchoOptions(BaseModel):
    model_config = ConfigDict(extra="forbid")

    dry_run: bool = False
    level: int = 0


class EchoArgs(BaseModel):
    """Typed arguments, so `--arg` parsing is checked by a real pydantic model."""

    model_config = ConfigDict(extra="forbid")

    count: int
    name: str
    tags: list[str] = []
    opts: EchoOptions = EchoOptions()


@job("cli.echo", args=EchoArgs, queue="default", retry=RetryPolicy(max_attempts=1))
def echo(ctx: JobContext, args: EchoArgs) -> dict[str, Any]:
    """Return the arguments it was given."""
    return args.model_dump(mode="json")


class FailArgs(BaseModel):
    model_config = ConfigDict(extra="forbid")

    reason: str = "boom"


@job("cli.fail", args=FailArgs, queue="default", retry=RetryPolicy(max_attempts=1))
def always_fail(ctx: JobContext, args: FailArgs) -> None:
    """Fail on the first and only attempt: the job goes to the dead letters."""
    raise RuntimeError(args.reason)


class ProgressArgs(BaseModel):
    model_config = ConfigDict(extra="forbid")

    steps: int = 5
    step_s: float = 0.2


@job("cli.progress", args=ProgressArgs, queue="default", retry=RetryPolicy(max_attempts=1))
def progress(ctx: JobContext, args: ProgressArgs) -> dict[str, int]:
    """Report progress step by step, then succeed."""
    for step in range(1, args.steps + 1):
        time.sleep(args.step_s)
        ctx.progress(step, args.steps, f"step {step}")
    return {"steps": args.steps}
