"""Putting expired unacknowledged messages back in their queue lists.

kombu's Redis transport keeps delivered-but-unacked messages in `unacked` (and their
delivery times in `unacked_index`) and only a running consumer ever puts expired ones
back: a queue scaled to zero would keep them forever. The leading beat calls kombu's own
`restore_visible` so they return to their lists once older than the visibility timeout.
"""

from __future__ import annotations

from celery import Celery
from redis import Redis

from jobyard.core import keys


class UnackedRestorer:
    """Runs kombu's visibility-timeout restore through a connection of `app`."""

    def __init__(
        self, app: Celery, client: Redis, visibility_timeout_s: float, *, batch: int = 1000
    ) -> None:
        self.app = app
        self.client = client
        self.visibility_timeout_s = visibility_timeout_s
        self.batch = batch

    def expired(self, now: float) -> int:
        """How many unacked messages were delivered longer than the visibility timeout ago."""
        return int(
            self.client.zcount(keys.KOMBU_UNACKED_INDEX, "-inf", now - self.visibility_timeout_s)
        )

    def restore_expired(self, now: float) -> int:
        """Restore expired messages; return how many left `unacked`.

        A worker restoring at the same moment holds kombu's mutex: this pass then does
        nothing and the next one retries.
        """
        before = self.expired(now)
        if not before:
            return 0
        left = before
        with self.app.connection_for_write() as conn:
            qos = conn.default_channel.qos
            while left:
                # interval=1: scan on this call (kombu throttles to every Nth call by default)
                qos.restore_visible(num=self.batch, interval=1)
                still = self.expired(now)
                if still >= left:
                    break
                left = still
        return before - left
