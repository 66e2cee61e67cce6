"""`Idempotency-Key`: the same key enqueues one job, whatever the number of requests.

The key is claimed (SET NX EX `limits.idempotency_ttl_s`) with the new job's id and a
fingerprint of the request, *before* the record and message are written. A later request
with the key gets the claimed job back; one with a different body is refused. A claim
whose transaction failed is released, but only while its job does not exist, so a
transaction that committed before a connection error is never enqueued twice.
"""

from __future__ import annotations

import contextlib
import json
import time
from dataclasses import dataclass

import anyio
import redis.asyncio

from jobyard.core import keys, store
from jobyard.core.enqueue import PreparedJob
from jobyard.core.jobs import get_job
from jobyard.core.records import JobRecord

IN_FLIGHT_S = 10.0
"""A claim younger than this whose job does not exist yet is being enqueued now."""
WAIT_FOR_CLAIM_S = 3.0
"""How long a duplicate request waits for an in-flight claim's job to appear."""

RELEASE_SCRIPT = """
-- KEYS[1] idempotency key, KEYS[2] the claimed job's record; ARGV[1] the claim
if redis.call('GET', KEYS[1]) == ARGV[1] and redis.call('EXISTS', KEYS[2]) == 0 then
  return redis.call('DEL', KEYS[1])
end
return 0
"""


class IdempotencyConflictError(Exception):
    """The key was used with a different request body."""

    def __init__(self, key: str) -> None:
        super().__init__(
            f"Idempotency-Key {key!r} was already used with a different request body; "
            "use a new key for a different job"
        )
        self.key = key


class IdempotencyInFlightError(Exception):
    """Another request with the key is still being enqueued."""

    def __init__(self, key: str) -> None:
        super().__init__(
            f"a request with Idempotency-Key {key!r} is still being processed; retry shortly"
        )
        self.key = key


@dataclass(frozen=True)
class Claim:
    job_id: str
    fingerprint: str
    claimed_at: float

    def dumps(self) -> str:
        return json.dumps(
            {"job_id": self.job_id, "fingerprint": self.fingerprint, "claimed_at": self.claimed_at}
        )

    @classmethod
    def loads(cls, raw: bytes | str) -> Claim | None:
        try:
            data = json.loads(raw)
            return cls(str(data["job_id"]), str(data["fingerprint"]), float(data["claimed_at"]))
        except (ValueError, TypeError, KeyError):
            return None


async def _release(client: redis.asyncio.Redis, key: str, claim: bytes | str, job_id: str) -> None:
    await client.eval(RELEASE_SCRIPT, 2, keys.idempotency(key), keys.job(job_id), claim)


async def enqueue_once(
    client: redis.asyncio.Redis,
    job: PreparedJob,
    *,
    key: str,
    fingerprint: str,
    result_ttl_s: int,
    idempotency_ttl_s: int,
) -> tuple[JobRecord, bool]:
    """Enqueue `job` unless `key` already names a job; (record, replayed)."""
    ikey = keys.idempotency(key)
    claim = Claim(job.record.id, fingerprint, time.time()).dumps()
    deadline = time.monotonic() + WAIT_FOR_CLAIM_S
    while True:
        if time.monotonic() > deadline + WAIT_FOR_CLAIM_S:
            raise IdempotencyInFlightError(key)
        if await client.set(ikey, claim, nx=True, ex=idempotency_ttl_s):
            try:
                pipe = client.pipeline(transaction=True)
                store.plan_enqueue(pipe, job.record, job.message, result_ttl_s=result_ttl_s)
                await pipe.execute()
            except BaseException:
                # If Redis is unreachable the claim stays, and goes stale after IN_FLIGHT_S.
                with anyio.CancelScope(shield=True), contextlib.suppress(redis.RedisError):
                    await _release(client, key, claim, job.record.id)
                raise
            return job.record, False
        raw = await client.get(ikey)
        if raw is None:
            continue  # released meanwhile: claim it
        existing = Claim.loads(raw)
        record = await get_job(client, existing.job_id) if existing is not None else None
        if existing is None or (record is None and time.time() - existing.claimed_at > IN_FLIGHT_S):
            # Unreadable, or its job never appeared (or expired): take the key over.
            await _release(client, key, raw, existing.job_id if existing else "-")
            continue
        if existing.fingerprint != fingerprint:
            raise IdempotencyConflictError(key)
        if record is not None:
            return record, True
        if time.monotonic() > deadline:
            raise IdempotencyInFlightError(key)
        await anyio.sleep(0.05)
