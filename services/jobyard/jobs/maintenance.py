"""`maintenance.cleanup`: prune what jobyard's indexes still hold after records expired.

Job records expire on their own (a TTL), but the indexes that point at them do not:

- dead letters older than `limits.dead_letter_ttl_s` are dropped with their records (and
  their entries in the recent-job indexes);
- recent-job indexes (`jobyard:recent`, `jobyard:recent:<queue>`): ids enqueued longer
  than `limits.result_ttl_s` ago are dropped, then up to `max_checked` of each index's
  oldest remaining ids are checked and dropped when their record is gone;
- worker registrations not refreshed for 10 heartbeat intervals are dropped;
- running-job entries older than the queue's hard time limit plus `RUNNING_MARGIN_S`
  are dropped (a child is killed at its hard limit, so nothing that old still runs).

Idempotency keys carry their own TTL and need nothing. Every Redis command touches at most
`batch_size` ids (ZRANGE with LIMIT, never KEYS), so a large backlog never blocks Redis.
Only configured queues are visited.
"""

from __future__ import annotations

import time
from collections import defaultdict
from collections.abc import Iterator
from typing import Annotated, Any

import redis
from pydantic import BaseModel, ConfigDict, Field

from jobyard.core import keys
from jobyard.core.context import JobContext
from jobyard.core.registry import RetryPolicy, job

RUNNING_MARGIN_S = 60.0
"""Slack above a queue's hard time limit before a running entry counts as stale."""
WORKER_STALE_HEARTBEATS = 10
"""A worker registration older than this many heartbeat intervals is stale."""

CLEANUP_RETRY = RetryPolicy(max_attempts=3, backoff_s=10.0, retry_on=(redis.RedisError,))


class CleanupArgs(BaseModel):
    """Arguments of `maintenance.cleanup`."""

    model_config = ConfigDict(extra="forbid", use_attribute_docstrings=True)

    dry_run: bool = False
    """Count what would be removed, and remove nothing."""
    batch_size: Annotated[int, Field(ge=1, le=10_000)] = 500
    """The most ids one Redis command reads or removes."""
    max_checked: Annotated[int, Field(ge=0, le=1_000_000)] = 10_000
    """How many of each recent index's oldest ids are checked for a missing record."""


def _ids(raw: Any) -> list[str]:
    return [i.decode() if isinstance(i, bytes) else str(i) for i in raw]


class _Sweeper:
    """One cleanup run: removals (or, in a dry run, exact counts) in bounded batches."""

    def __init__(self, client: redis.Redis, args: CleanupArgs) -> None:
        self.client = client
        self.dry_run = args.dry_run
        self.batch_size = args.batch_size
        self.max_checked = args.max_checked
        self.shadowed: dict[str, int] = defaultdict(int)
        """Dry run: expired index entries a real run drops with their dead letter instead."""

    def _batches(self, key: str, low: float | str, high: float | str) -> Iterator[list[str]]:
        """Ids of `key` scored in [low, high], one batch at a time, oldest first.

        In a real run the caller removes each batch before asking for the next.
        """
        start = 0
        while True:
            raw = self.client.zrangebyscore(key, low, high, start=start, num=self.batch_size)
            if not raw:
                return
            yield _ids(raw)
            if self.dry_run:
                start += len(raw)

    def older_than(self, key: str, cutoff: float) -> int:
        """Drop members of the sorted set `key` scored at or below `cutoff`."""
        if self.dry_run:
            return int(self.client.zcount(key, "-inf", cutoff)) - self.shadowed[key]
        return sum(int(self.client.zrem(key, *ids)) for ids in self._batches(key, "-inf", cutoff))

    def dead_letters(self, queue: str, cutoff: float, recent_cutoff: float) -> int:
        """Drop dead letters at or below `cutoff` with their records and index entries."""
        key = keys.dead_letters(queue)
        indexes = (keys.RECENT, keys.recent(queue))
        removed = 0
        for ids in self._batches(key, "-inf", cutoff):
            if self.dry_run:
                pipe = self.client.pipeline(transaction=False)
                for i in ids:
                    for index in indexes:
                        pipe.zscore(index, i)
                scores = pipe.execute()
                for n, score in enumerate(scores):
                    if score is not None and score <= recent_cutoff:
                        self.shadowed[indexes[n % len(indexes)]] += 1
                removed += len(ids)
                continue
            pipe = self.client.pipeline(transaction=True)
            pipe.zrem(key, *ids)
            pipe.delete(*(keys.job(i) for i in ids))
            for index in indexes:
                pipe.zrem(index, *ids)
            removed += int(pipe.execute()[0])
        return removed

    def missing_records(self, key: str, cutoff: float) -> int:
        """Drop up to `max_checked` of the oldest ids above `cutoff` whose record is gone."""
        removed = 0
        checked = 0
        start = 0
        while checked < self.max_checked:
            n = min(self.batch_size, self.max_checked - checked)
            ids = _ids(self.client.zrangebyscore(key, f"({cutoff}", "+inf", start=start, num=n))
            if not ids:
                break
            pipe = self.client.pipeline(transaction=False)
            for i in ids:
                pipe.exists(keys.job(i))
            gone = [i for i, exists in zip(ids, pipe.execute(), strict=True) if not exists]
            if gone and not self.dry_run:
                self.client.zrem(key, *gone)
            removed += len(gone)
            checked += len(ids)
            start += len(ids) - (0 if self.dry_run else len(gone))
        return removed


@job("maintenance.cleanup", args=CleanupArgs, queue="default", retry=CLEANUP_RETRY)
def cleanup(ctx: JobContext, args: CleanupArgs) -> dict[str, Any]:
    """Prune expired job ids, old dead letters, stale workers and stale running entries.

    Result: how many entries each step removed (or would remove, with `dry_run`):
    `recent_expired` and `recent_missing` count index entries (a job is listed in
    `jobyard:recent` and in its queue's index), `dead_letters` counts dead jobs dropped
    with their records, `workers` and `running` count stale entries.
    """
    limits = ctx.config.limits
    now = time.time()
    sweep = _Sweeper(ctx.redis, args)
    queues = ctx.config.queues
    recent_cutoff = now - limits.result_ttl_s
    counts = {"dead_letters": 0, "recent_expired": 0, "recent_missing": 0}
    for q in queues:
        counts["dead_letters"] += sweep.dead_letters(
            q.name, now - limits.dead_letter_ttl_s, recent_cutoff
        )
    for index in (keys.RECENT, *(keys.recent(q.name) for q in queues)):
        counts["recent_expired"] += sweep.older_than(index, recent_cutoff)
        counts["recent_missing"] += sweep.missing_records(index, recent_cutoff)
    worker_cutoff = now - WORKER_STALE_HEARTBEATS * ctx.settings.heartbeat_interval_s
    counts["workers"] = sum(sweep.older_than(keys.workers(q.name), worker_cutoff) for q in queues)
    counts["running"] = sum(
        sweep.older_than(keys.running(q.name), now - q.time_limit_s - RUNNING_MARGIN_S)
        for q in queues
    )
    return {"dry_run": args.dry_run, **counts}
