"""The leadership lease: one Redis key that only the leading beat renews.

The key holds the leader's id and expires `ttl_s` after its last renewal. A standby
takes it with `SET NX PX` once it has expired; the leader renews and releases it with
scripts that act only while the key still holds its own id, so a beat that paused past
its lease can never extend or delete its successor's.
"""

from __future__ import annotations

import os
import secrets
import socket

import redis

from jobyard.core import keys

RENEW_SCRIPT = """
if redis.call('GET', KEYS[1]) == ARGV[1] then
  return redis.call('PEXPIRE', KEYS[1], ARGV[2])
end
return 0
"""
"""Compare-and-pexpire: extend the lease only if it is still ours."""

RELEASE_SCRIPT = """
if redis.call('GET', KEYS[1]) == ARGV[1] then
  return redis.call('DEL', KEYS[1])
end
return 0
"""
"""Compare-and-delete: drop the lease only if it is still ours."""


def new_beat_id() -> str:
    """A lease value unique to this process: `hostname:pid:random`."""
    return f"{socket.gethostname()}:{os.getpid()}:{secrets.token_hex(4)}"


class Lease:
    """The beat leadership lease at `keys.BEAT_LEASE`."""

    def __init__(self, client: redis.Redis, beat_id: str, ttl_s: float) -> None:
        self.client = client
        self.beat_id = beat_id
        self.ttl_ms = max(1, round(ttl_s * 1000))
        self.held = False
        """Whether this beat held the lease at its last successful `hold()`."""
        self._renew = client.register_script(RENEW_SCRIPT)
        self._release = client.register_script(RELEASE_SCRIPT)

    def hold(self) -> bool:
        """Renew the lease if ours, else try to take it; return whether we hold it.

        Raises redis errors; `held` then keeps its last known value, so a beat that
        still holds its lease after a Redis blip renews it instead of waiting for it to
        expire.
        """
        renewed = bool(self._renew(keys=[keys.BEAT_LEASE], args=[self.beat_id, self.ttl_ms]))
        if renewed:
            self.held = True
            return True
        self.held = bool(self.client.set(keys.BEAT_LEASE, self.beat_id, nx=True, px=self.ttl_ms))
        return self.held

    def release(self) -> bool:
        """Delete the lease if it is still ours (clean shutdown: a standby takes over at once)."""
        released = bool(self._release(keys=[keys.BEAT_LEASE], args=[self.beat_id]))
        self.held = False
        return released

    def holder(self) -> str | None:
        """The id of the beat that holds the lease now, if any."""
        raw = self.client.get(keys.BEAT_LEASE)
        if raw is None:
            return None
        return raw.decode() if isinstance(raw, bytes) else str(raw)
