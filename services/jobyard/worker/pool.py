"""The prefork pool of jobyard workers: Celery's, checking for dead children every second.

Celery notices a prefork child's death from the child's sentinel fd, but misses some (seen
here with a plain Celery 5.7 worker: of two children killed in turn, one was noticed at
once and the other only by the pool's maintenance sweep, which runs every 5 s). Until the
death is noticed its job is neither requeued nor failed; with a hard time limit shorter
than that gap, the crash is even reported as `TimeLimitExceeded` and the job fails after
one run, so a poison message never reaches its dead letter. A 1 s sweep bounds that delay.

Every job with a time limit (every jobyard job) puts two entries in the event loop's
timer heap (soft and hard limit). When the job ends Celery cancels them, but kombu only
marks a cancelled entry and keeps it until it is due: the heap holds every job of the
last `soft_time_limit_s` (seen here: the worker's main process grew 6 MiB per 10,000
jobs, 300,000 entries at 1,000 jobs/s with the default 300 s). The pool drops cancelled
entries every few seconds (:func:`compact_timer`).
"""

from __future__ import annotations

import heapq
from typing import Any

from celery.concurrency.asynpool import AsynPool
from celery.concurrency.prefork import TaskPool

MAINTAIN_INTERVAL_S = 1.0
"""How often the pool reaps dead children and starts replacements (Celery: 5 s)."""
TIMER_COMPACT_INTERVAL_S = 5.0
"""How often cancelled entries are dropped from the event loop's timer heap."""


def compact_timer(timer: Any) -> int:
    """Drop the cancelled entries of a kombu `Timer`'s heap; returns how many."""
    queue = timer._queue
    live = [item for item in queue if not item.entry.canceled]
    dropped = len(queue) - len(live)
    if dropped:
        heapq.heapify(live)
        queue[:] = live
    return dropped


class _SweepingAsynPool(AsynPool):  # type: ignore[misc]
    @property
    def timers(self) -> dict[Any, float]:
        return {self.maintain_pool: MAINTAIN_INTERVAL_S}


class PreforkPool(TaskPool):  # type: ignore[misc]
    """`--pool prefork` for jobyard workers."""

    Pool = _SweepingAsynPool

    def register_with_event_loop(self, loop: Any) -> None:
        super().register_with_event_loop(loop)
        loop.call_repeatedly(TIMER_COMPACT_INTERVAL_S, compact_timer, loop.timer)
