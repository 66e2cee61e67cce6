"""What a running job can see and do: its id, attempt, progress and cancellation."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

from jobyard.core import keys, store
from jobyard.core.records import Progress

if TYPE_CHECKING:
    import redis

    from jobyard.core.config import JobyardConfig
    from jobyard.core.settings import Settings


@dataclass
class JobContext:
    """Passed to every job function as its first argument."""

    job_id: str
    task: str
    queue: str
    attempt: int
    """1 on the first run, 2 on the first retry, and so on."""
    max_attempts: int
    settings: Settings
    redis: redis.Redis
    config: JobyardConfig
    """The validated `jobyard.yaml` (queues, limits, broker)."""

    def progress(
        self, current: float, total: float | None = None, message: str | None = None
    ) -> None:
        """Report progress; visible at `GET /v1/jobs/{id}` at once."""
        pipe = self.redis.pipeline(transaction=False)
        store.plan_progress(
            pipe, self.job_id, Progress(current=current, total=total, message=message)
        )
        pipe.execute()

    def cancel_requested(self) -> bool:
        """True once someone asked to cancel this running job; stop cooperatively."""
        return self.redis.hget(keys.job(self.job_id), "cancel_requested") == b"1"

    def raise_if_cancelled(self, message: str = "cancelled while running") -> None:
        """Raise :class:`~jobyard.core.registry.JobCancelled` once cancellation was asked for."""
        if self.cancel_requested():
            from jobyard.core.registry import JobCancelled

            raise JobCancelled(message)

    @property
    def is_last_attempt(self) -> bool:
        return self.attempt >= self.max_attempts
