"""Reads and writes of job records, dead letters and queue indexes.

Write helpers *plan* commands onto a redis-py pipeline (sync or asyncio: their command
methods are the same), so the API (async) and the workers (sync) share one definition of
every write. Callers execute the pipeline.
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterable
from typing import Any

from jobyard.core import keys
from jobyard.core.messages import BuiltMessage
from jobyard.core.records import JobError, JobRecord, JobState, Progress, dumps

Pipe = Any
"""A redis-py `Pipeline` or `redis.asyncio` `Pipeline`."""


def now_s() -> float:
    return time.time()


def _record_ttl_s(record: JobRecord, result_ttl_s: int) -> int:
    """A new record lives `result_ttl_s` plus however long it waits for its ETA."""
    return result_ttl_s + int(max(0.0, (record.eta or 0) - record.enqueued_at))


def plan_index_task(pipe: Pipe, task: str, members: dict[str, float], *, result_ttl_s: int) -> None:
    """File job ids (id -> enqueue time) in their task's index, and drop the entries
    enqueued longer than `result_ttl_s` before the newest (so the index stays bounded as
    `recent` is: by age, per registered task)."""
    pipe.zadd(keys.by_task(task), members)
    cutoff = max(members.values()) - result_ttl_s
    pipe.zremrangebyscore(keys.by_task(task), "-inf", f"({cutoff!r}")


def plan_index(pipe: Pipe, record: JobRecord, *, result_ttl_s: int) -> None:
    """File a new record in the listing indexes: all jobs, its queue's, its task's."""
    pipe.zadd(keys.RECENT, {record.id: record.enqueued_at})
    pipe.zadd(keys.recent(record.queue), {record.id: record.enqueued_at})
    plan_index_task(pipe, record.task, {record.id: record.enqueued_at}, result_ttl_s=result_ttl_s)


def plan_enqueue(
    pipe: Pipe, record: JobRecord, message: BuiltMessage, *, result_ttl_s: int
) -> None:
    """Create the record and publish (or schedule) its message."""
    rkey = keys.job(record.id)
    pipe.hset(rkey, mapping=record.to_hash())
    pipe.expire(rkey, _record_ttl_s(record, result_ttl_s))
    plan_index(pipe, record, result_ttl_s=result_ttl_s)
    if record.state is JobState.SCHEDULED:
        assert record.eta is not None
        pipe.hset(
            keys.SCHEDULED_MESSAGES, record.id, json.dumps([message.list_key, message.payload])
        )
        pipe.zadd(keys.SCHEDULED, {record.id: record.eta})
    else:
        pipe.lpush(message.list_key, message.payload)
        pipe.zadd(keys.pending(record.queue), {record.id: record.enqueued_at})


def plan_enqueue_many(
    pipe: Pipe, jobs: Iterable[tuple[JobRecord, BuiltMessage]], *, result_ttl_s: int
) -> None:
    """:func:`plan_enqueue` for many jobs, with one ZADD per index and one LPUSH per list.

    The same keys and values, in two commands per job (record, TTL) plus a few per batch
    (per queue and per task) instead of eight per job. Messages keep their order: LPUSH
    of several values pushes them one after the other.
    """
    recent: dict[str, float] = {}
    by_queue: dict[str, dict[str, float]] = {}
    by_task: dict[str, dict[str, float]] = {}
    lists: dict[str, list[str]] = {}
    for record, message in jobs:
        if record.state is JobState.SCHEDULED:
            plan_enqueue(pipe, record, message, result_ttl_s=result_ttl_s)
            continue
        rkey = keys.job(record.id)
        pipe.hset(rkey, mapping=record.to_hash())
        pipe.expire(rkey, _record_ttl_s(record, result_ttl_s))
        recent[record.id] = record.enqueued_at
        by_queue.setdefault(record.queue, {})[record.id] = record.enqueued_at
        by_task.setdefault(record.task, {})[record.id] = record.enqueued_at
        lists.setdefault(message.list_key, []).append(message.payload)
    if recent:
        pipe.zadd(keys.RECENT, recent)
    for queue, members in by_queue.items():
        pipe.zadd(keys.recent(queue), members)
        pipe.zadd(keys.pending(queue), members)
    for task, members in by_task.items():
        plan_index_task(pipe, task, members, result_ttl_s=result_ttl_s)
    for list_key, payloads in lists.items():
        pipe.lpush(list_key, *payloads)


def plan_get(pipe: Pipe, job_id: str) -> None:
    pipe.hgetall(keys.job(job_id))


def parse_record(raw: dict[Any, Any]) -> JobRecord | None:
    return JobRecord.from_hash(raw) if raw else None


def plan_progress(pipe: Pipe, job_id: str, progress: Progress) -> None:
    pipe.hset(keys.job(job_id), "progress", progress.model_dump_json(exclude_none=True))


def plan_succeeded(
    pipe: Pipe,
    job_id: str,
    queue: str,
    result: Any,
    *,
    result_ttl_s: int,
    clear_error: bool = True,
) -> None:
    """Record a success; `clear_error=False` skips deleting an earlier attempt's error
    when the caller knows there is none (the start script says)."""
    rkey = keys.job(job_id)
    pipe.hset(
        rkey,
        mapping={
            "state": JobState.SUCCEEDED.value,
            "finished_at": str(now_s()),
            "result": dumps(result),
        },
    )
    if clear_error:
        pipe.hdel(rkey, "error")
    pipe.expire(rkey, result_ttl_s)
    pipe.zrem(keys.running(queue), job_id)
    pipe.zrem(keys.pending(queue), job_id)


def plan_retrying(
    pipe: Pipe, job_id: str, queue: str, error: JobError, next_attempt_at: float
) -> None:
    pipe.hset(
        keys.job(job_id),
        mapping={
            "state": JobState.RETRYING.value,
            "error": error.model_dump_json(),
            "eta": str(next_attempt_at),
        },
    )
    pipe.zrem(keys.running(queue), job_id)


def plan_failed(
    pipe: Pipe,
    job_id: str,
    queue: str,
    error: JobError,
    *,
    dead: bool,
    result_ttl_s: int,
    dead_letter_ttl_s: int,
) -> None:
    """Terminal failure; `dead` also files the job in its queue's dead letters."""
    rkey = keys.job(job_id)
    now = now_s()
    state = JobState.DEAD if dead else JobState.FAILED
    pipe.hset(
        rkey,
        mapping={"state": state.value, "finished_at": str(now), "error": error.model_dump_json()},
    )
    pipe.expire(rkey, max(result_ttl_s, dead_letter_ttl_s) if dead else result_ttl_s)
    pipe.zrem(keys.running(queue), job_id)
    pipe.zrem(keys.pending(queue), job_id)
    if dead:
        pipe.zadd(keys.dead_letters(queue), {job_id: now})


def plan_requeued(pipe: Pipe, job_id: str, queue: str, error: JobError) -> None:
    """The worker running the job was lost; the broker redelivers it."""
    pipe.hset(
        keys.job(job_id), mapping={"state": JobState.QUEUED.value, "error": error.model_dump_json()}
    )
    pipe.zrem(keys.running(queue), job_id)


def plan_cancelled(pipe: Pipe, job_id: str, queue: str) -> None:
    pipe.hset(
        keys.job(job_id), mapping={"state": JobState.CANCELLED.value, "finished_at": str(now_s())}
    )
    pipe.zrem(keys.running(queue), job_id)
    pipe.zrem(keys.pending(queue), job_id)
    pipe.zrem(keys.SCHEDULED, job_id)
    pipe.hdel(keys.SCHEDULED_MESSAGES, job_id)


START_FUNCTION = """
local function start_job(job_key, running_key, now, worker, job_id)
  local found = redis.call('HMGET', job_key, 'state', 'attempts', 'error')
  local state = found[1]
  if not state then return {'missing', 0, 0} end
  if state == 'cancelled' or state == 'succeeded' then return {state, 0, 0} end
  local attempts = (tonumber(found[2]) or 0) + 1
  redis.call('HSET', job_key, 'state', 'started', 'started_at', now, 'worker', worker,
             'attempts', attempts)
  redis.call('ZADD', running_key, now, job_id)
  return {state, attempts, found[3] and 1 or 0}
end
"""
"""The start of a job as a Lua function, shared by :data:`START_SCRIPT` and the worker's
take script (`jobyard.worker.delivery`)."""

START_SCRIPT = (
    START_FUNCTION
    + """
-- KEYS[1] job hash, KEYS[2] running zset; ARGV: now, worker, job id
return start_job(KEYS[1], KEYS[2], ARGV[1], ARGV[2], ARGV[3])
"""
)
"""Atomically mark a job started unless it was cancelled or already succeeded.

Returns [state found, attempts now, 1 if the record holds an earlier attempt's error]
(one read, one write and the running index: three commands inside the script)."""


GIVE_BACK_SCRIPT = """
-- KEYS[1] job hash, KEYS[2] running zset; ARGV: job id, error JSON
if redis.call('HGET', KEYS[1], 'state') ~= 'started' then return 0 end
redis.call('HSET', KEYS[1], 'state', 'queued', 'error', ARGV[2])
if tonumber(redis.call('HGET', KEYS[1], 'attempts') or '0') > 0 then
  redis.call('HINCRBY', KEYS[1], 'attempts', -1)
end
redis.call('ZREM', KEYS[2], ARGV[1])
return 1
"""
"""A worker shutting down gives a running job back to its queue: the record says queued
again, and this start does not count as an attempt (the job did not fail: its worker was
scaled down). Only a record that still says `started` changes, so a job that finished
meanwhile keeps its outcome. Returns 1 if the record changed."""


REFUSE_SCRIPT = """
-- KEYS: [1] the record the message names (KEYS[2] when it names none), [2] a new record,
-- [3] running, [4] pending, [5] dead letters, [6] recent and [7] recent of the queue the
-- message was taken from, [8] unacked hash, [9] unacked index.
-- ARGV: [1] the message's job id ('' if none), [2] the new record's id, [3] now,
-- [4] error JSON, [5] record ttl, [6] '1' when the start script ran for this very
-- delivery (then the job never ran, though its record says started), [7] the queue,
-- [8] the delivery tag to remove from unacked ('' if none), [9...] the new record's fields.
local function waits(state)
  return state == 'queued' or state == 'retrying' or state == 'scheduled'
    or (ARGV[6] == '1' and state == 'started')
end
local function bury(key, id)
  redis.call('HSET', key, 'id', id, unpack(ARGV, 9))
  redis.call('EXPIRE', key, ARGV[5])
  redis.call('ZADD', KEYS[5], ARGV[3], id)
  redis.call('ZADD', KEYS[6], ARGV[3], id)
  redis.call('ZADD', KEYS[7], ARGV[3], id)
  return {id, 'new'}
end
if ARGV[8] ~= '' then
  redis.call('HDEL', KEYS[8], ARGV[8])
  redis.call('ZREM', KEYS[9], ARGV[8])
end
local id = ARGV[1]
if id == '' then return bury(KEYS[2], ARGV[2]) end
local found = redis.call('HMGET', KEYS[1], 'state', 'queue')
local state = found[1]
if not state then return bury(KEYS[1], id) end
if found[2] ~= ARGV[7] or not waits(state) then return bury(KEYS[2], ARGV[2]) end
if state == 'started' then
  -- undo what the start script wrote for this delivery
  if tonumber(redis.call('HGET', KEYS[1], 'attempts') or '0') > 0 then
    redis.call('HINCRBY', KEYS[1], 'attempts', -1)
  end
  redis.call('HDEL', KEYS[1], 'started_at', 'worker')
end
redis.call('HSET', KEYS[1], 'state', 'dead', 'finished_at', ARGV[3], 'error', ARGV[4])
redis.call('EXPIRE', KEYS[1], ARGV[5])
redis.call('ZREM', KEYS[3], id)
redis.call('ZREM', KEYS[4], id)
redis.call('ZADD', KEYS[5], ARGV[3], id)
return {id, 'record'}
"""
"""A worker refused a message (it never ran): it becomes a dead letter of the queue it
was taken from, and leaves `unacked` in the same step.

The record the message names becomes dead with the reason if it belongs to that queue and
still waits to run (queued, retrying, scheduled, or started by this delivery's own start
script); with no such record, a new dead record holds the reason: under the message's id
when no record has it, else under a new id (a record the message does not own, one that
ran or runs elsewhere, is left alone). Returns [the dead record's id, 'record' | 'new']."""
