"""Jobs for the fault-injection suite; load with `JOBYARD_JOB_MODULES=tests.support.fault_jobs`.

Each job leaves evidence outside Redis, so a test can count executions even when Redis or
the worker lies or dies:

- `faults.effect`: appends `<job id>\\n` to `path` (fsynced), then sleeps `sleep_s`. Not
  idempotent: a run killed after its append and redelivered appends again (at-least-once).
- `faults.effect_once`: the same effect, made idempotent: under an exclusive lock it appends
  only if `path` does not already hold the job id (check and act are one step, so a crash
  before the append leaves nothing and a crash after it makes the redelivery skip).
- `faults.crash`: kills its own process (SIGKILL or `os._exit`) on every run: a poison
  message. Each start is appended to `path` first.
- `faults.hog`: ignores its soft time limit and sleeps past its hard limit. Each start is
  appended to `path` first.

Every job can write its process id to `pid_path` before acting, so a test can SIGKILL the
prefork child running it.
"""

from __future__ import annotations

import fcntl
import os
import signal
import time
from pathlib import Path
from typing import Annotated, Literal

from celery.exceptions import SoftTimeLimitExceeded
from pydantic import BaseModel, ConfigDict, Field

from jobyard.core.context import JobContext
from jobyard.core.registry import RetryPolicy, job

FAULTS_QUEUE = "alpha"
"""The default queue of every fault job (requests name another when they need to)."""

REDELIVERY_RETRY = RetryPolicy(max_attempts=5, backoff_s=0.2, backoff_max_s=1, jitter=False)
"""Five starts: enough to survive the kills a chaos run deals one job."""


class EffectArgs(BaseModel):
    model_config = ConfigDict(extra="forbid")

    path: str
    """The append-only effect file (one job id per line)."""
    sleep_s: Annotated[float, Field(ge=0, le=30)] = 0
    """How long to run after the effect (a window for the test to kill the run)."""
    pid_path: str | None = None
    """Where to write this run's process id before the effect."""


def _write_pid(pid_path: str | None) -> None:
    if pid_path is not None:
        tmp = Path(pid_path + ".tmp")
        tmp.write_text(str(os.getpid()))
        tmp.replace(pid_path)


def append_line(path: str, line: str) -> None:
    """Append `line` and fsync, under an exclusive lock (lines never interleave)."""
    with Path(path).open("a", encoding="utf-8") as f:
        fcntl.flock(f, fcntl.LOCK_EX)
        f.write(line + "\n")
        f.flush()
        os.fsync(f.fileno())


@job("faults.effect", args=EffectArgs, queue=FAULTS_QUEUE, retry=REDELIVERY_RETRY)
def effect(ctx: JobContext, args: EffectArgs) -> int:
    """Append the job id to `path`, then sleep `sleep_s`."""
    _write_pid(args.pid_path)
    append_line(args.path, ctx.job_id)
    time.sleep(args.sleep_s)
    return ctx.attempt


@job(
    "faults.effect_once",
    args=EffectArgs,
    queue=FAULTS_QUEUE,
    retry=REDELIVERY_RETRY,
    idempotent=True,
)
def effect_once(ctx: JobContext, args: EffectArgs) -> bool:
    """Append the job id to `path` unless it is already there; True if this run did."""
    _write_pid(args.pid_path)
    with Path(args.path).open("a+", encoding="utf-8") as f:
        fcntl.flock(f, fcntl.LOCK_EX)
        f.seek(0)
        done = ctx.job_id in f.read().split("\n")
        if not done:
            f.write(ctx.job_id + "\n")
            f.flush()
            os.fsync(f.fileno())
    time.sleep(args.sleep_s)
    return not done


class CrashArgs(BaseModel):
    model_config = ConfigDict(extra="forbid")

    path: str
    """Each start appends the job id here."""
    how: Literal["sigkill", "exit"] = "sigkill"
    after_s: Annotated[float, Field(ge=0, le=10)] = 0
    """Run this long before crashing."""


@job(
    "faults.crash",
    args=CrashArgs,
    queue=FAULTS_QUEUE,
    retry=RetryPolicy(max_attempts=3, backoff_s=0.2, backoff_max_s=0.5, jitter=False),
)
def crash(ctx: JobContext, args: CrashArgs) -> None:
    """Kill the process running this job, every time."""
    append_line(args.path, ctx.job_id)
    time.sleep(args.after_s)
    if args.how == "sigkill":
        os.kill(os.getpid(), signal.SIGKILL)
    os._exit(13)


class HogArgs(BaseModel):
    model_config = ConfigDict(extra="forbid")

    path: str
    """Each start appends the job id here."""
    seconds: Annotated[float, Field(gt=0, le=120)] = 60


@job(
    "faults.hog",
    args=HogArgs,
    queue=FAULTS_QUEUE,
    retry=RetryPolicy(max_attempts=3, backoff_s=0.2, backoff_max_s=0.5, jitter=False),
)
def hog(ctx: JobContext, args: HogArgs) -> None:
    """Sleep `seconds`, swallowing the soft time limit: only the hard limit stops it."""
    append_line(args.path, ctx.job_id)
    deadline = time.monotonic() + args.seconds
    while time.monotonic() < deadline:
        try:
            time.sleep(0.05)
        except SoftTimeLimitExceeded:
            continue
