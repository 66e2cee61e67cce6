"""Delayed jobs: moving those that fell due from `keys.SCHEDULED` to their queue lists."""

from __future__ import annotations

import time
from dataclasses import dataclass

import redis

from jobyard.core import keys

PROMOTE_SCRIPT = """
-- KEYS[1] scheduled zset (id -> due time), KEYS[2] scheduled messages hash
-- ARGV[1] now, ARGV[2] max ids, ARGV[3] job record key prefix, ARGV[4] pending key prefix
-- Queue lists and job records are reached through the stored message and the id.
local ids = redis.call('ZRANGEBYSCORE', KEYS[1], '-inf', ARGV[1], 'LIMIT', 0, ARGV[2])
local promoted = 0
for _, id in ipairs(ids) do
  local raw = redis.call('HGET', KEYS[2], id)
  redis.call('ZREM', KEYS[1], id)
  redis.call('HDEL', KEYS[2], id)
  local record = ARGV[3] .. id
  if raw and redis.call('HGET', record, 'state') == 'scheduled' then
    local entry = cjson.decode(raw)
    redis.call('LPUSH', entry[1], entry[2])
    redis.call('HSET', record, 'state', 'queued')
    redis.call('ZADD', ARGV[4] .. redis.call('HGET', record, 'queue'), ARGV[1], id)
    promoted = promoted + 1
  end
end
return {#ids, promoted}
"""
"""Move up to ARGV[2] due jobs; a job whose record no longer says `scheduled` (cancelled)
is dropped, not queued. Returns {due ids handled, ids queued}."""


@dataclass(frozen=True)
class Promotion:
    """What one promotion pass did."""

    promoted: int = 0
    """Jobs now waiting in their queue list."""
    dropped: int = 0
    """Due entries removed without queueing (record cancelled, missing or not scheduled)."""


class DelayedJobs:
    """The delayed-job set and the script that releases due jobs."""

    def __init__(self, client: redis.Redis, *, batch: int = 500) -> None:
        self.batch = batch
        self._promote = client.register_script(PROMOTE_SCRIPT)

    def promote_due(self, now: float, *, budget_s: float) -> Promotion:
        """Queue every job due at `now`, `batch` per script call, for at most `budget_s`.

        Whatever is left after the budget (a huge backlog) is promoted at the next tick,
        so the leader keeps renewing its lease.
        """
        deadline = time.monotonic() + budget_s
        promoted = dropped = 0
        while True:
            handled, queued = self._promote(
                keys=[keys.SCHEDULED, keys.SCHEDULED_MESSAGES],
                args=[repr(now), self.batch, keys.job(""), keys.pending("")],
            )
            promoted += int(queued)
            dropped += int(handled) - int(queued)
            if int(handled) < self.batch or time.monotonic() >= deadline:
                return Promotion(promoted, dropped)
