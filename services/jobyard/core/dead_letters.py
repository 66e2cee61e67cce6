"""Dead letters: jobs that failed their last attempt, kept per queue to retry or purge.

A dead job's id sits in `keys.dead_letters(queue)` (scored by time of death) and its
record keeps state `dead`. Retrying re-publishes the same job id with its attempts reset;
purging deletes the record. Both are Lua scripts whose first step removes the id from the
dead set, so two concurrent retries publish one message, and a purge never deletes a job
that was just retried.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import redis.asyncio
from celery import Celery
from pydantic import ValidationError

from jobyard.core import keys, store
from jobyard.core.config import JobyardConfig
from jobyard.core.enqueue import EnqueueError, EnqueueRequest, prepare
from jobyard.core.errors import JobyardError, UnknownQueueError, UnknownTaskError
from jobyard.core.jobs import get_jobs
from jobyard.core.messages import BuiltMessage
from jobyard.core.records import JobRecord, JobState
from jobyard.core.registry import Registry

BULK_CHUNK = 500
"""Jobs handled per round trip by the bulk retry and purge."""

RETRY_SCRIPT = """
-- KEYS[1] dead set, KEYS[2] job hash, KEYS[3] queue list, KEYS[4] pending set
-- ARGV: job id, message, record ttl
if redis.call('ZREM', KEYS[1], ARGV[1]) == 0 then return 0 end
if redis.call('EXISTS', KEYS[2]) == 0 then return -1 end
redis.call('HSET', KEYS[2], 'state', 'queued', 'attempts', '0')
redis.call('HDEL', KEYS[2], 'started_at', 'finished_at', 'eta', 'progress', 'result',
           'cancel_requested', 'worker')
redis.call('EXPIRE', KEYS[2], ARGV[3])
redis.call('LPUSH', KEYS[3], ARGV[2])
redis.call('ZADD', KEYS[4], redis.call('TIME')[1], ARGV[1])
return 1
"""
"""1: retried; 0: not a dead letter (any more); -1: its record had expired (id dropped)."""

PURGE_SCRIPT = """
-- KEYS[1] dead set, KEYS[2] job hash; ARGV: job id
if redis.call('ZREM', KEYS[1], ARGV[1]) == 0 then return 0 end
redis.call('DEL', KEYS[2])
return 1
"""
"""1: purged; 0: not a dead letter."""


class NotADeadLetterError(JobyardError):
    """The job does not exist, or is not in its queue's dead letters."""

    def __init__(self, job_id: str, state: JobState | None) -> None:
        self.job_id = job_id
        self.state = state
        where = "does not exist" if state is None else f"is {state.value}, not dead"
        super().__init__(f"job {job_id!r} {where}")


class CannotRetryError(JobyardError):
    """A dead job that can no longer be enqueued as it was (task or queue removed, ...)."""


def retry_message(
    app: Celery,
    config: JobyardConfig,
    registry: Registry,
    record: JobRecord,
    *,
    now: float,
    root_id: str | None = None,
    chain: list[dict[str, Any]] | None = None,
) -> BuiltMessage:
    """A fresh message for the job `record` (same id, task, args, queue, priority, trace),
    to publish it again: a dead letter retried, or a message lost in transit
    (`beat.orphans`, which passes the rest of a chain as `root_id` and `chain`)."""
    req = EnqueueRequest(
        task=record.task,
        args=record.args,
        queue=record.queue,
        priority=record.priority,
        job_id=record.id,
        idempotency_key=record.idempotency_key,
        workflow_id=record.workflow_id,
        trace_id=record.trace_id,
        root_id=root_id,
        chain=chain,
    )
    try:
        return prepare(app, config, registry, req, now=now).message
    except (UnknownTaskError, UnknownQueueError, EnqueueError) as exc:
        raise CannotRetryError(f"job {record.id!r} cannot be retried: {exc}") from exc
    except ValidationError as exc:
        raise CannotRetryError(
            f"job {record.id!r} cannot be retried: its arguments no longer match "
            f"{record.task!r}: {exc.error_count()} error(s)"
        ) from exc


def plan_retry(pipe: Any, record: JobRecord, message: BuiltMessage, *, result_ttl_s: int) -> None:
    """Queue the atomic retry of one dead job (one result: see RETRY_SCRIPT)."""
    pipe.eval(
        RETRY_SCRIPT,
        4,
        keys.dead_letters(record.queue),
        keys.job(record.id),
        message.list_key,
        keys.pending(record.queue),
        record.id,
        message.payload,
        result_ttl_s,
    )


def plan_purge(pipe: Any, queue: str, job_id: str) -> None:
    """Queue the atomic purge of one dead job (one result: see PURGE_SCRIPT)."""
    pipe.eval(PURGE_SCRIPT, 2, keys.dead_letters(queue), keys.job(job_id), job_id)


def _decode(raw: Any) -> str:
    return raw.decode() if isinstance(raw, bytes) else str(raw)


async def list_dead_letters(
    client: redis.asyncio.Redis, queues: Sequence[str], *, limit: int
) -> list[JobRecord]:
    """The newest dead jobs of `queues`, newest first (ids whose record expired skipped)."""
    pipe = client.pipeline(transaction=False)
    for queue in queues:
        pipe.zrevrange(keys.dead_letters(queue), 0, limit - 1, withscores=True)
    scored: list[tuple[float, str]] = []
    for entries in await pipe.execute():
        scored.extend((float(score), _decode(job_id)) for job_id, score in entries)
    scored.sort(reverse=True)
    ids = [job_id for _, job_id in scored[:limit]]
    return [r for r in await get_jobs(client, ids) if r is not None]


@dataclass
class RetryContext:
    """What retrying needs besides Redis."""

    app: Celery
    config: JobyardConfig
    registry: Registry


async def retry_one(
    client: redis.asyncio.Redis, ctx: RetryContext, job_id: str, *, now: float
) -> JobRecord:
    """Re-publish one dead job; raise :class:`NotADeadLetterError` or
    :class:`CannotRetryError`."""
    record = store.parse_record(await client.hgetall(keys.job(job_id)))
    if record is None or record.state is not JobState.DEAD:
        raise NotADeadLetterError(job_id, None if record is None else record.state)
    message = retry_message(ctx.app, ctx.config, ctx.registry, record, now=now)
    pipe = client.pipeline(transaction=False)
    plan_retry(pipe, record, message, result_ttl_s=ctx.config.limits.result_ttl_s)
    store.plan_get(pipe, job_id)
    outcome, raw = await pipe.execute()
    retried = store.parse_record(raw)
    if int(outcome) != 1 or retried is None:
        raise NotADeadLetterError(job_id, None if retried is None else retried.state)
    return retried


async def purge_one(client: redis.asyncio.Redis, job_id: str) -> None:
    """Delete one dead job; raise :class:`NotADeadLetterError`."""
    record = store.parse_record(await client.hgetall(keys.job(job_id)))
    if record is None or record.state is not JobState.DEAD:
        raise NotADeadLetterError(job_id, None if record is None else record.state)
    pipe = client.pipeline(transaction=False)
    plan_purge(pipe, record.queue, job_id)
    (outcome,) = await pipe.execute()
    if int(outcome) != 1:
        raise NotADeadLetterError(job_id, record.state)


@dataclass(frozen=True)
class BulkRetry:
    """What a bulk retry did."""

    retried: int
    skipped: int
    """Dead jobs left in place because they cannot be enqueued as they were."""


async def retry_queue(
    client: redis.asyncio.Redis, ctx: RetryContext, queue: str, *, now: float
) -> BulkRetry:
    """Re-publish every job that is in `queue`'s dead letters now."""
    ids = [_decode(i) for i in await client.zrange(keys.dead_letters(queue), 0, -1)]
    retried = skipped = 0
    ttl = ctx.config.limits.result_ttl_s
    for start in range(0, len(ids), BULK_CHUNK):
        chunk = ids[start : start + BULK_CHUNK]
        records = await get_jobs(client, chunk)
        pipe = client.pipeline(transaction=False)
        kinds: list[str] = []
        for job_id, record in zip(chunk, records, strict=True):
            if record is None:
                plan_purge(pipe, queue, job_id)  # the record expired: drop the stale id
                kinds.append("stale")
                continue
            try:
                message = retry_message(ctx.app, ctx.config, ctx.registry, record, now=now)
            except CannotRetryError:
                skipped += 1
                continue
            plan_retry(pipe, record, message, result_ttl_s=ttl)
            kinds.append("retry")
        if not kinds:
            continue
        results = await pipe.execute()
        retried += sum(
            1
            for kind, outcome in zip(kinds, results, strict=True)
            if kind == "retry" and int(outcome) == 1
        )
    return BulkRetry(retried, skipped)


async def purge_queue(client: redis.asyncio.Redis, queue: str) -> int:
    """Delete every job that is in `queue`'s dead letters now; the number purged."""
    ids = [_decode(i) for i in await client.zrange(keys.dead_letters(queue), 0, -1)]
    purged = 0
    for start in range(0, len(ids), BULK_CHUNK):
        pipe = client.pipeline(transaction=False)
        for job_id in ids[start : start + BULK_CHUNK]:
            plan_purge(pipe, queue, job_id)
        purged += sum(1 for outcome in await pipe.execute() if int(outcome) == 1)
    return purged
