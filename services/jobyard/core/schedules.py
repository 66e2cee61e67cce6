"""When a schedule runs next, and what to do with a run missed while beat was down.

Shared by beat (which sends) and the API (which shows last and next runs). Times are unix
seconds; cron expressions are evaluated in UTC with Celery's `crontab` (as in Celery,
day-of-month and day-of-week must both match: `0 0 1 * 1` is "the 1st, when a Monday").

The last-run time of a schedule (`keys.schedule_last_run`) is the due time of the last run
beat dealt with: sent, skipped, or (for a cron schedule seen for the first time) the moment
beat started counting. Beat stores the *due* time, not the send time, so runs stay on
their grid (`interval_s` from the first run, cron on its fire times) whatever beat's delays.

Runs that fell due since the last one are never sent one by one: one decision deals with
all of them at once, under the name of the latest (a catch-up is one run, never a burst,
and the next run is the next regular one). If that latest run is older than the grace
period it was missed, and the schedule's policy decides: `run-once` sends it, `skip`
records it as dealt with and sends nothing.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from datetime import UTC, datetime
from enum import StrEnum

from celery.schedules import crontab

from jobyard.core.config import BeatConfig, ScheduleConfig

MISSED_GRACE_S: float = BeatConfig.model_fields["missed_grace_s"].default
"""Default grace (`beat.missed_grace_s`): a run due less than this long ago is on time."""

_CRON_RESOLUTION_S = 1.0
"""Cron fire times are whole minutes; searching for them to the second is exact."""


class Decision(StrEnum):
    """What beat does with a schedule at one tick."""

    WAIT = "wait"
    SEND = "send"
    SKIP = "skip"
    """A missed run under the `skip` policy: advance the last-run time, send nothing."""
    START = "start"
    """A cron schedule never run: record now as its last-run time, send nothing; its first
    run is the next fire time after that."""


@dataclass(frozen=True)
class Verdict:
    """A decision and the run it is about."""

    decision: Decision
    due_at: float
    """WAIT: the next run. SEND/SKIP: the run sent or skipped, which becomes the last-run
    time (the latest one due when several are). START: now."""
    oldest_due_at: float | None = None
    """SEND/SKIP: the oldest run not yet dealt with (below `due_at` when runs are merged)."""

    @property
    def merged(self) -> bool:
        """Several runs fell due and this one decision stands for all of them."""
        return self.oldest_due_at is not None and self.oldest_due_at < self.due_at


def _utc(ts: float) -> datetime:
    return datetime.fromtimestamp(ts, tz=UTC)


def _next_cron_fire(cron: crontab, after: float) -> float:
    start = _utc(after)
    begin, delta, _ = cron.remaining_delta(start, tz=UTC)
    nxt: datetime = begin + delta
    if nxt <= start:  # ffwd can land on `start` itself when it matches the expression
        begin, delta, _ = cron.remaining_delta(_utc(start.timestamp() + 60), tz=UTC)
        nxt = begin + delta
    return nxt.timestamp()


def next_run_at(schedule: ScheduleConfig, last_run_at: float | None, now: float) -> float:
    """The first run strictly after `last_run_at` (after `now` for a cron never run).

    An interval schedule never run is due at once.
    """
    if schedule.interval_s is not None:
        return now if last_run_at is None else last_run_at + schedule.interval_s
    assert schedule.cron is not None
    return _next_cron_fire(
        crontab.from_string(schedule.cron), now if last_run_at is None else last_run_at
    )


def latest_due_at(schedule: ScheduleConfig, last_run_at: float | None, now: float) -> float | None:
    """The latest run due at or before `now` and after `last_run_at`; None when none is.

    An interval schedule never run is due now; a cron schedule never run has no run due
    (its first is the next fire time).
    """
    if schedule.interval_s is not None:
        if last_run_at is None:
            return now
        if last_run_at + schedule.interval_s > now:
            return None
        periods = math.floor((now - last_run_at) / schedule.interval_s)
        latest = last_run_at + periods * schedule.interval_s
        return latest if latest <= now else latest - schedule.interval_s
    if last_run_at is None:
        return None
    assert schedule.cron is not None
    cron = crontab.from_string(schedule.cron)
    first = _next_cron_fire(cron, last_run_at)
    if first > now:
        return None
    # The next fire after t never decreases as t grows: find the last t whose next fire is
    # still due. Its next fire is the latest due one (fires are whole minutes apart).
    lo, hi = first, now
    if _next_cron_fire(cron, lo) > now:
        return first
    while hi - lo > _CRON_RESOLUTION_S:
        mid = (lo + hi) / 2
        if _next_cron_fire(cron, mid) <= now:
            lo = mid
        else:
            hi = mid
    return _next_cron_fire(cron, lo)


def decide(
    schedule: ScheduleConfig,
    last_run_at: float | None,
    now: float,
    *,
    grace_s: float = MISSED_GRACE_S,
) -> Verdict:
    """Whether to send `schedule` now, given the due time of the run it last dealt with."""
    if last_run_at is None and schedule.cron is not None:
        return Verdict(Decision.START, now)
    oldest = next_run_at(schedule, last_run_at, now)
    if oldest > now:
        return Verdict(Decision.WAIT, oldest)
    latest = latest_due_at(schedule, last_run_at, now)
    assert latest is not None
    if schedule.missed == "skip" and now - latest > grace_s:
        return Verdict(Decision.SKIP, latest, oldest)
    return Verdict(Decision.SEND, latest, oldest)
