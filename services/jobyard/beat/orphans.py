"""Jobs whose message vanished in transit, published again from their records.

kombu's Redis transport takes a message with BRPOP, which removes it from its list, and
only then records it in `unacked`. A worker killed between the two (SIGKILL, the OOM
killer, a lost node) takes the only copy with it, and the job's record says `queued`
forever (seen here: 9 jobs lost in 60 SIGKILLs of a worker pulling a stream of short
jobs). So jobyard indexes, per queue, the jobs whose message should exist
(`keys.pending`: added when the message is published, removed when the job finishes), and
the leading beat checks that index against the messages actually in the queue's lists and
in `unacked`. A job missing at two checks in a row (`beat.orphan_check_interval_s` apart,
so never one merely between BRPOP and `unacked`) is published again from its record: same
id, task, arguments, queue and priority, and for a chain member the rest of its chain. A
retry lost this way runs without waiting out its backoff.

The check is cheap when nothing is missing: one ZCARD and one LLEN per list of each queue,
plus the (small) `unacked` hash; the lists are read only when the index holds more jobs
than the queue holds messages.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Sequence
from typing import Any

import redis
from celery import Celery

from jobyard.core import keys, store
from jobyard.core.config import JobyardConfig
from jobyard.core.dead_letters import CannotRetryError, retry_message
from jobyard.core.messages import BuiltMessage
from jobyard.core.records import JobError, JobRecord
from jobyard.core.registry import Registry
from jobyard.core.workflows import WorkflowType, chain_continuation, parse_workflow

log = logging.getLogger("jobyard.beat")

GRACE_S = 2.0
"""Jobs published less than this long ago are not checked yet."""

REPUBLISH_SCRIPT = """
-- KEYS[1] job hash, KEYS[2] pending zset, KEYS[3] queue list, KEYS[4] running zset
-- ARGV: job id, message, now, error JSON, grace
local state = redis.call('HGET', KEYS[1], 'state')
if state ~= 'queued' and state ~= 'retrying' and state ~= 'started' then return 0 end
local published = redis.call('ZSCORE', KEYS[2], ARGV[1])
if not published or tonumber(published) > tonumber(ARGV[3]) - tonumber(ARGV[5]) then
  return 0
end
redis.call('LPUSH', KEYS[3], ARGV[2])
redis.call('HSET', KEYS[1], 'state', 'queued')
if redis.call('HEXISTS', KEYS[1], 'error') == 0 then
  redis.call('HSET', KEYS[1], 'error', ARGV[4])
end
redis.call('ZREM', KEYS[4], ARGV[1])
redis.call('ZADD', KEYS[2], ARGV[3], ARGV[1])
return 1
"""
"""Publish the message again unless the job finished, left the index or was published
within the grace (by another beat that also believed it led, for one)."""

LOST = JobError(
    type="MessageLost",
    message="the job's message was lost in transit (a worker was killed after taking it "
    "from Redis); jobyard published it again",
).model_dump_json()

_ACTIVE = frozenset({"queued", "retrying", "started"})


def _text(raw: Any) -> str:
    return raw.decode() if isinstance(raw, bytes) else str(raw)


class OrphanSweeper:
    """Finds and republishes jobs of `config`'s queues whose message is gone."""

    def __init__(
        self, app: Celery, client: redis.Redis, config: JobyardConfig, registry: Registry
    ) -> None:
        self.app = app
        self.client = client
        self.config = config
        self.registry = registry
        self._republish = client.register_script(REPUBLISH_SCRIPT)
        self._suspects: dict[str, set[str]] = {}

    def check(self, now: float) -> int:
        """One check of every queue; returns how many jobs were published again."""
        unacked = self._unacked_ids()
        republished = 0
        for queue in self.config.queue_names:
            missing = self._missing(queue, unacked.get(queue, set()), now)
            confirmed = missing & self._suspects.get(queue, set())
            self._suspects[queue] = missing - confirmed
            for job_id in sorted(confirmed):
                republished += self._publish_again(queue, job_id, now)
        return republished

    def _unacked_ids(self) -> dict[str, set[str]]:
        by_queue: dict[str, set[str]] = {}
        for raw in self.client.hvals(keys.KOMBU_UNACKED):
            try:
                envelope, _exchange, routing_key = json.loads(raw)
                job_id = envelope["headers"]["id"]
            except (ValueError, TypeError, KeyError):
                continue
            by_queue.setdefault(str(routing_key), set()).add(str(job_id))
        return by_queue

    def _missing(self, queue: str, unacked: set[str], now: float) -> set[str]:
        """Indexed, unfinished jobs of `queue` with no message in its lists or `unacked`."""
        pending_key = keys.pending(queue)
        lists = keys.queue_lists(queue, self.config.broker.priority_steps)
        pipe = self.client.pipeline(transaction=False)
        pipe.zcard(pending_key)
        for name in lists:
            pipe.llen(name)
        indexed, *lengths = pipe.execute()
        if int(indexed) <= sum(int(n) for n in lengths) + len(unacked):
            return set()
        present = set(unacked)
        for name in lists:
            for raw in self.client.lrange(name, 0, -1):
                try:
                    present.add(str(json.loads(raw)["headers"]["id"]))
                except (ValueError, TypeError, KeyError):
                    continue
        old = [_text(m) for m in self.client.zrangebyscore(pending_key, "-inf", now - GRACE_S)]
        absent = [job_id for job_id in old if job_id not in present]
        if not absent:
            return set()
        pipe = self.client.pipeline(transaction=False)
        for job_id in absent:
            pipe.hget(keys.job(job_id), "state")
        states = [None if s is None else _text(s) for s in pipe.execute()]
        finished = [j for j, s in zip(absent, states, strict=True) if s not in _ACTIVE]
        if finished:  # done, cancelled or expired: no message is owed any more
            self.client.zrem(pending_key, *finished)
        return {j for j, s in zip(absent, states, strict=True) if s in _ACTIVE}

    def _publish_again(self, queue: str, job_id: str, now: float) -> int:
        record = store.parse_record(self.client.hgetall(keys.job(job_id)))
        if record is None:
            return 0
        try:
            message = self._message(record, now)
        except CannotRetryError as exc:
            log.error("job %s lost its message and cannot be published again: %s", job_id, exc)
            return 0
        done = int(
            self._republish(
                keys=[
                    keys.job(job_id),
                    keys.pending(queue),
                    message.list_key,
                    keys.running(queue),
                ],
                args=[job_id, message.payload, repr(now), LOST, GRACE_S],
            )
        )
        if done:
            log.warning(
                "job %s lost its message in transit (a worker was killed after taking it); "
                "published it again",
                job_id,
                extra={"job_id": job_id, "queue": queue},
            )
        return done

    def _message(self, record: JobRecord, now: float) -> BuiltMessage:
        rest = self._chain_after(record)
        if not rest:
            return retry_message(self.app, self.config, self.registry, record, now=now)
        root_id, members = rest
        chain = chain_continuation(self.app, self.config, self.registry, members, root_id=root_id)
        return retry_message(
            self.app, self.config, self.registry, record, now=now, root_id=root_id, chain=chain
        )

    def _chain_after(self, record: JobRecord) -> tuple[str, Sequence[JobRecord]] | None:
        """(root id, [record, later members...]) for a chain member with later members."""
        if record.workflow_id is None:
            return None
        workflow = parse_workflow(
            record.workflow_id, self.client.hgetall(keys.workflow(record.workflow_id))
        )
        if workflow is None or workflow.type is not WorkflowType.CHAIN:
            return None
        ids = workflow.job_ids
        if record.id not in ids or ids[-1] == record.id:
            return None
        later = ids[ids.index(record.id) + 1 :]
        pipe = self.client.pipeline(transaction=False)
        for job_id in later:
            store.plan_get(pipe, job_id)
        records = [store.parse_record(raw) for raw in pipe.execute()]
        if any(r is None for r in records):
            return None
        return ids[0], [record, *(r for r in records if r is not None)]
