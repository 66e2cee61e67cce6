"""Every Redis key jobyard reads or writes, named in one place.

Celery/kombu own the queue lists (`<queue>`, `<queue>\\x06\\x16<step>`), `unacked` and
`unacked_index`; jobyard's own keys all start with `jobyard:`.
"""

from __future__ import annotations

from collections.abc import Iterable

PREFIX = "jobyard:"
KOMBU_PRIORITY_SEP = "\x06\x16"
KOMBU_UNACKED = "unacked"
KOMBU_UNACKED_INDEX = "unacked_index"


def queue_list(queue: str, step: int) -> str:
    """The Redis list kombu uses for `queue` at priority step `step`."""
    return queue if step == 0 else f"{queue}{KOMBU_PRIORITY_SEP}{step}"


def queue_lists(queue: str, steps: Iterable[int]) -> list[str]:
    """Every list a job of `queue` can wait in, most urgent first."""
    return [queue_list(queue, s) for s in steps]


def priority_step(priority: int, steps: Iterable[int]) -> int:
    """The step kombu files a message of `priority` under (the highest step <= priority)."""
    chosen = 0
    for s in steps:
        if s <= priority:
            chosen = s
    return chosen


def job(job_id: str) -> str:
    """Hash: the job record."""
    return f"{PREFIX}job:{job_id}"


RECENT = f"{PREFIX}recent"
"""Sorted set of job ids by enqueue time (all queues)."""


def recent(queue: str) -> str:
    """Sorted set of one queue's job ids by enqueue time."""
    return f"{PREFIX}recent:{queue}"


def by_task(task: str) -> str:
    """Sorted set of one task's job ids by enqueue time (all queues); written at enqueue,
    entries older than `limits.result_ttl_s` trimmed by each enqueue of the task."""
    return f"{PREFIX}bytask:{task}"


def idempotency(key: str) -> str:
    """String: the job id an `Idempotency-Key` maps to."""
    return f"{PREFIX}idem:{key}"


def dead_letters(queue: str) -> str:
    """Sorted set of dead job ids by time of death."""
    return f"{PREFIX}dead:{queue}"


def running(queue: str) -> str:
    """Sorted set of running job ids by start time."""
    return f"{PREFIX}running:{queue}"


def pending(queue: str) -> str:
    """Sorted set of job ids whose message should be in `queue` (published and not
    finished), by publish time. Beat republishes a job whose message vanished (a worker
    killed after taking it from Redis, before recording it as unacknowledged)."""
    return f"{PREFIX}pending:{queue}"


def workers(queue: str) -> str:
    """Sorted set of worker hostnames by last heartbeat."""
    return f"{PREFIX}workers:{queue}"


SCHEDULED = f"{PREFIX}scheduled"
"""Sorted set of delayed job ids by due time; beat moves due ones to their list."""
SCHEDULED_MESSAGES = f"{PREFIX}scheduled:msg"
"""Hash: delayed job id -> JSON [list key, kombu message]."""
BEAT_LEASE = f"{PREFIX}beat:lease"
"""String: the id of the beat that leads, with a short TTL."""
BEAT_LAST_TICK = f"{PREFIX}beat:tick"
"""String: when the leading beat last ticked (unix seconds)."""


def schedule_last_run(name: str) -> str:
    """String: due time (unix seconds, `repr` of a float) of the last run beat dealt with.

    Sent or skipped (beat stores the run's due time, not when it sent it); for a cron
    schedule never run, the time beat first saw it (its first run is the next fire time).
    """
    return f"{PREFIX}schedule:{name}:last"


def workflow(workflow_id: str) -> str:
    """Hash: a chain or group and its member job ids."""
    return f"{PREFIX}workflow:{workflow_id}"
