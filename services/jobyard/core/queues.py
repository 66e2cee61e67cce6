"""Queue statistics measured from Redis: depth, oldest waiting job, running, workers.

One pipeline round trip covers every queue, and the cost is O(queues x priority steps),
never O(backlog). Plan the commands onto a sync or asyncio pipeline with
:func:`plan_queue_stats`, execute it, and read the results with :func:`parse_queue_stats`::

    pipe = client.pipeline(transaction=False)
    plan = plan_queue_stats(pipe, config, settings, now=time.time())
    stats = parse_queue_stats(plan, pipe.execute())

The API (`GET /v1/queues`) and the scrape-time queue metrics share this.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

from pydantic import BaseModel, Field

from jobyard.core import keys
from jobyard.core.config import JobyardConfig, QueueConfig
from jobyard.core.messages import ENQUEUED_AT_HEADER, ETA_HEADER
from jobyard.core.settings import Settings

RUNNING_SLACK_S = 60.0
"""A running entry older than the queue's hard limit plus this is stale (a lost worker)."""

WORKER_HEARTBEATS_MISSED = 3
"""A worker whose last heartbeat is older than this many intervals is not counted."""


class QueueStats(BaseModel):
    """One queue, as measured now."""

    name: str
    depth: int = Field(description="Jobs waiting in the queue, over every priority list.")
    depth_by_priority: dict[str, int] = Field(
        description="Waiting jobs per priority step (kombu list), keyed by the step."
    )
    oldest_job_age_s: float | None = Field(
        description="How long the oldest waiting job has waited (since enqueued, or since "
        "due for a delayed job); null when the queue is empty or the oldest messages carry "
        "no enqueue time (published by Celery itself: chain steps, retries)."
    )
    in_progress: int = Field(description="Jobs running now.")
    workers: int = Field(description="Workers with a recent heartbeat.")
    dead_letters: int = Field(description="Jobs in this queue's dead-letter set.")


@dataclass(frozen=True)
class QueueStatsPlan:
    """What :func:`plan_queue_stats` queued, to read the pipeline's results back."""

    queues: tuple[QueueConfig, ...]
    steps: tuple[int, ...]
    now: float
    first_index: int
    """Index of this plan's first result in the pipeline's result list."""

    @property
    def commands_per_queue(self) -> int:
        return 2 * len(self.steps) + 3


def plan_queue_stats(
    pipe: Any,
    config: JobyardConfig,
    settings: Settings,
    *,
    now: float,
    queues: list[QueueConfig] | None = None,
    first_index: int = 0,
) -> QueueStatsPlan:
    """Queue the reads for `queues` (default: every configured queue) onto `pipe`.

    `first_index` is the number of commands already on `pipe` before these.
    """
    chosen = tuple(config.queues if queues is None else queues)
    steps = tuple(config.broker.priority_steps)
    worker_since = now - WORKER_HEARTBEATS_MISSED * settings.heartbeat_interval_s
    for queue in chosen:
        lists = keys.queue_lists(queue.name, steps)
        for name in lists:
            pipe.llen(name)
        for name in lists:
            # kombu LPUSHes and consumers BRPOP: the last element is the oldest.
            pipe.lindex(name, -1)
        pipe.zcount(keys.running(queue.name), now - queue.time_limit_s - RUNNING_SLACK_S, "+inf")
        pipe.zcount(keys.workers(queue.name), worker_since, "+inf")
        pipe.zcard(keys.dead_letters(queue.name))
    return QueueStatsPlan(chosen, steps, now, first_index)


def parse_queue_stats(plan: QueueStatsPlan, results: list[Any]) -> list[QueueStats]:
    """The stats of every planned queue, from the executed pipeline's results."""
    out: list[QueueStats] = []
    n_steps = len(plan.steps)
    i = plan.first_index
    for queue in plan.queues:
        depths = [int(v) for v in results[i : i + n_steps]]
        oldest_raw = results[i + n_steps : i + 2 * n_steps]
        running, workers, dead = results[i + 2 * n_steps : i + 2 * n_steps + 3]
        i += plan.commands_per_queue
        ages = [a for a in (message_age_s(raw, plan.now) for raw in oldest_raw) if a is not None]
        out.append(
            QueueStats(
                name=queue.name,
                depth=sum(depths),
                depth_by_priority={str(s): d for s, d in zip(plan.steps, depths, strict=True)},
                oldest_job_age_s=max(ages) if ages else None,
                in_progress=int(running),
                workers=int(workers),
                dead_letters=int(dead),
            )
        )
    return out


def message_age_s(raw: bytes | str | None, now: float) -> float | None:
    """Seconds the kombu message `raw` has been waiting: since it was enqueued, or since it
    fell due for a delayed job. None when the message does not say."""
    if raw is None:
        return None
    try:
        headers = json.loads(raw)["headers"]
        waiting_since = float(headers[ENQUEUED_AT_HEADER])
        if headers.get(ETA_HEADER) is not None:
            waiting_since = max(waiting_since, float(headers[ETA_HEADER]))
    except (ValueError, TypeError, KeyError):
        return None
    return max(0.0, now - waiting_since)
