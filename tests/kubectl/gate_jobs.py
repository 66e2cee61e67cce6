"""A job the drain test holds running until it opens a gate (loaded with
JOBYARD_JOB_MODULES=...,tests.kubectl.gate_jobs)."""

from __future__ import annotations

import time

from pydantic import BaseModel, ConfigDict

from jobyard.core.context import JobContext
from jobyard.core.registry import RetryPolicy, job

GATE_KEY = "kubectl-test:gate"
MAX_WAIT_S = 4.0
"""Below the test config's soft time limit (5 s)."""


class GateArgs(BaseModel):
    model_config = ConfigDict(extra="forbid")


@job("kubectl.gated", args=GateArgs, queue="reports", retry=RetryPolicy(max_attempts=1))
def gated(ctx: JobContext, args: GateArgs) -> str:
    """Run until the gate key exists (or MAX_WAIT_S passed); say which happened."""
    deadline = time.monotonic() + MAX_WAIT_S
    while time.monotonic() < deadline:
        if ctx.redis.exists(GATE_KEY):
            return "gate opened"
        time.sleep(0.05)
    return "gave up waiting"
