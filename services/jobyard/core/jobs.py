"""Reading, listing and cancelling jobs (the API's side of the job store)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import redis.asyncio
from celery import Celery
from pydantic import ValidationError

from jobyard.core import keys, store
from jobyard.core.config import JobyardConfig
from jobyard.core.enqueue import EnqueueError, EnqueueRequest, PreparedJob, prepare
from jobyard.core.errors import JobyardError, UnknownQueueError, UnknownTaskError
from jobyard.core.records import JobRecord, JobState
from jobyard.core.registry import Registry
from jobyard.observability.tracing import trace_headers

LIST_PAGE_SIZE = 500
"""Ids read per round trip while listing."""
LIST_SCAN_LIMIT = 5000
"""At most this many of the newest ids are examined by one listing (filters included)."""

CANCEL_SCRIPT = """
-- KEYS[1] job hash, KEYS[2] scheduled zset, KEYS[3] scheduled messages hash
-- ARGV: job id, now, ttl of a cancelled record
local state = redis.call('HGET', KEYS[1], 'state')
if not state then return 'missing' end
if state == 'queued' or state == 'scheduled' or state == 'retrying' then
  redis.call('HSET', KEYS[1], 'state', 'cancelled', 'finished_at', ARGV[2])
  redis.call('EXPIRE', KEYS[1], ARGV[3])
  redis.call('ZREM', KEYS[2], ARGV[1])
  redis.call('HDEL', KEYS[3], ARGV[1])
elseif state == 'started' then
  redis.call('HSET', KEYS[1], 'cancel_requested', '1')
end
return state
"""
"""Cancel a job that has not started (the worker skips its message when it arrives: see
`store.START_SCRIPT`), or ask a running one to stop. Returns the state found."""


@dataclass(frozen=True)
class CancelOutcome:
    """What a cancel request found and did."""

    previous: JobState | None
    """The state before the request; None when the job does not exist."""
    record: JobRecord | None

    @property
    def cancelled(self) -> bool:
        return self.previous is not None and self.previous in _CANCELLED_NOW

    @property
    def stop_requested(self) -> bool:
        return self.previous is JobState.STARTED


_CANCELLED_NOW = frozenset({JobState.QUEUED, JobState.SCHEDULED, JobState.RETRYING})


def plan_cancel(pipe: Any, job_id: str, *, now: float, cancelled_ttl_s: int) -> None:
    """Queue the cancel script and a read of the record afterwards (two results)."""
    pipe.eval(
        CANCEL_SCRIPT,
        3,
        keys.job(job_id),
        keys.SCHEDULED,
        keys.SCHEDULED_MESSAGES,
        job_id,
        repr(now),
        cancelled_ttl_s,
    )
    store.plan_get(pipe, job_id)


def parse_cancel(results: Sequence[Any]) -> CancelOutcome:
    """Read back what :func:`plan_cancel` queued."""
    raw_state, raw_record = results[0], results[1]
    state = raw_state.decode() if isinstance(raw_state, bytes) else str(raw_state)
    if state == "missing":
        return CancelOutcome(None, None)
    return CancelOutcome(JobState(state), store.parse_record(raw_record))


async def get_job(client: redis.asyncio.Redis, job_id: str) -> JobRecord | None:
    """The job's record; None when it does not exist (or expired)."""
    return store.parse_record(await client.hgetall(keys.job(job_id)))


async def get_jobs(client: redis.asyncio.Redis, job_ids: Sequence[str]) -> list[JobRecord | None]:
    """Records of `job_ids` in order, in one round trip (None for missing ones)."""
    if not job_ids:
        return []
    pipe = client.pipeline(transaction=False)
    for job_id in job_ids:
        store.plan_get(pipe, job_id)
    return [store.parse_record(raw) for raw in await pipe.execute()]


def _decode(raw: Any) -> str:
    return raw.decode() if isinstance(raw, bytes) else str(raw)


async def _listing_index(
    client: redis.asyncio.Redis, queue: str | None, task: str | None
) -> str | None:
    """The index a listing reads: its queue's or its task's, the smaller of the two when
    both are given (one ZCARD each, in one round trip), else all jobs'. None when an
    index it needs is empty (nothing can match)."""
    candidates = [k for k in (queue and keys.recent(queue), task and keys.by_task(task)) if k]
    if not candidates:
        return keys.RECENT
    if len(candidates) == 1:
        return candidates[0]
    pipe = client.pipeline(transaction=False)
    for key in candidates:
        pipe.zcard(key)
    size, key = min(zip(await pipe.execute(), candidates, strict=True))
    return key if size else None


async def list_jobs(
    client: redis.asyncio.Redis,
    *,
    queue: str | None = None,
    state: JobState | None = None,
    task: str | None = None,
    limit: int = 50,
    scan_limit: int = LIST_SCAN_LIMIT,
) -> list[JobRecord]:
    """Recent jobs, newest first, filtered; examines at most `scan_limit` of the newest
    ids of the index it reads.

    A queue or task filter is served by that queue's or task's index (the smaller one for
    both), so no record of another queue or task is read; `state` is checked on the
    records read. Ids whose record expired are skipped.
    """
    index = await _listing_index(client, queue, task)
    found: list[JobRecord] = []
    start = 0
    while index is not None and len(found) < limit and start < scan_limit:
        stop = min(start + LIST_PAGE_SIZE, scan_limit) - 1
        ids = [_decode(i) for i in await client.zrevrange(index, start, stop)]
        if not ids:
            break
        for record in await get_jobs(client, ids):
            if record is None:
                continue
            if queue is not None and record.queue != queue:
                continue
            if state is not None and record.state is not state:
                continue
            if task is not None and record.task != task:
                continue
            found.append(record)
            if len(found) == limit:
                break
        start = stop + 1
    return found


class InvalidMembersError(JobyardError):
    """Some jobs of a batch or workflow are invalid: (index, error) for each failure."""

    def __init__(self, errors: list[tuple[int, Exception]]) -> None:
        self.errors = errors
        super().__init__(
            f"{len(errors)} invalid job(s) at index {', '.join(str(i) for i, _ in errors)}"
        )


def prepare_many(
    app: Celery,
    config: JobyardConfig,
    registry: Registry,
    requests: Sequence[EnqueueRequest],
    *,
    now: float,
) -> list[PreparedJob]:
    """Prepare every request, all or nothing: raise :class:`InvalidMembersError` naming
    each bad one.

    Catches what `prepare` raises (unknown task or queue, invalid arguments, bad
    priority/delay/eta); anything else propagates.
    """
    prepared: list[PreparedJob] = []
    errors: list[tuple[int, Exception]] = []
    tracing = trace_headers()  # one span: the batch's request
    for index, req in enumerate(requests):
        try:
            prepared.append(prepare(app, config, registry, req, now=now, tracing=tracing))
        except (ValidationError, EnqueueError, UnknownQueueError, UnknownTaskError) as exc:
            errors.append((index, exc))
    if errors:
        raise InvalidMembersError(errors)
    return prepared
