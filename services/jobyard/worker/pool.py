"""The prefork pool of jobyard workers: Celery's, checking for dead children every second.

Celery notices a prefork child's death from the child's sentinel fd, but misses some (seen
here with a plain Celery 5.7 worker: of two children killed in turn, one was noticed at
once and the other only by the pool's maintenance sweep, which runs every 5 s). Until the
death is noticed its job is neither requeued nor failed; with a hard time limit shorter
than that gap, the crash is even reported as `TimeLimitExceeded` and the job fails after
one run, so a poison message never reaches its dead letter. A 1 s sweep bounds that delay.
"""

from __future__ import annotations

from typing import Any

from celery.concurrency.asynpool import AsynPool
from celery.concurrency.prefork import TaskPool

MAINTAIN_INTERVAL_S = 1.0
"""How often the pool reaps dead children and starts replacements (Celery: 5 s)."""


class _SweepingAsynPool(AsynPool):  # type: ignore[misc]
    @property
    def timers(self) -> dict[Any, float]:
        return {self.maintain_pool: MAINTAIN_INTERVAL_S}


class PreforkPool(TaskPool):  # type: ignore[misc]
    """`--pool prefork` for jobyard workers."""

    Pool = _SweepingAsynPool
