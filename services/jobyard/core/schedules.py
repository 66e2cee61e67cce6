"""When a schedule runs next, and what to do with a run missed while beat was down.

Shared by beat (which sends) and the API (which shows last and next runs). Times are unix
seconds; cron expressions are evaluated in UTC with Celery's `crontab`.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime
from enum import StrEnum

from celery.schedules import crontab

from jobyard.core.config import ScheduleConfig

MISSED_GRACE_S = 60.0
"""A run due less than this long ago is on time, not missed (beat ticks, restarts)."""


class Decision(StrEnum):
    """What beat does with a schedule at one tick."""

    WAIT = "wait"
    SEND = "send"
    SKIP = "skip"
    """A missed run under the `skip` policy: advance the last-run time, send nothing."""


@dataclass(frozen=True)
class Verdict:
    decision: Decision
    due_at: float
    """The run time the decision is about (the next run when waiting)."""


def _utc(ts: float) -> datetime:
    return datetime.fromtimestamp(ts, tz=UTC)


def next_run_at(schedule: ScheduleConfig, last_run_at: float | None, now: float) -> float:
    """The first run strictly after `last_run_at` (after `now` for a cron never run).

    An interval schedule never run is due at once.
    """
    if schedule.interval_s is not None:
        return now if last_run_at is None else last_run_at + schedule.interval_s
    assert schedule.cron is not None
    cron = crontab.from_string(schedule.cron)
    start = _utc(now if last_run_at is None else last_run_at)
    begin, delta, _ = cron.remaining_delta(start, tz=UTC)
    nxt: datetime = begin + delta
    if nxt <= start:  # ffwd can land on `start` itself when it matches the expression
        begin, delta, _ = cron.remaining_delta(_utc(start.timestamp() + 60), tz=UTC)
        nxt = begin + delta
    return nxt.timestamp()


def decide(schedule: ScheduleConfig, last_run_at: float | None, now: float) -> Verdict:
    """Whether to send `schedule` now, given when it last ran."""
    due = next_run_at(schedule, last_run_at, now)
    if due > now:
        return Verdict(Decision.WAIT, due)
    if schedule.missed == "skip" and now - due > MISSED_GRACE_S:
        return Verdict(Decision.SKIP, due)
    return Verdict(Decision.SEND, due)
