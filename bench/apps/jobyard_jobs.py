"""The benchmark's jobyard jobs (`JOBYARD_JOB_MODULES=bench.apps.jobyard_jobs`)."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict

from bench.apps import stamp as stamps
from jobyard.core.context import JobContext
from jobyard.core.registry import job


class NoArgs(BaseModel):
    model_config = ConfigDict(extra="forbid")


class StampArgs(BaseModel):
    model_config = ConfigDict(extra="forbid")
    t0: float


@job("bench.noop", args=NoArgs, queue="bench")
def noop(ctx: JobContext, args: NoArgs) -> None:
    """Do nothing."""


@job("bench.stamp", args=StampArgs, queue="bench")
def stamp(ctx: JobContext, args: StampArgs) -> None:
    """Record the enqueue-to-start time."""
    stamps.record(args.t0)
