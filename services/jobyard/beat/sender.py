"""Sending the configured schedules, each run exactly once even with two leaders.

Every tick the leader reads each enabled schedule's last-run time and asks
:func:`jobyard.core.schedules.decide` what to do. A run is sent through the normal enqueue
path (a job record like any other) in the same Redis transaction that moves the last-run
time forward, and only if that time still holds the value read (WATCH, compare, MULTI,
EXEC): two beats that both believe they lead can never send the same run twice.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import redis
from celery import Celery

from jobyard.beat.state import BeatState
from jobyard.core import keys, store
from jobyard.core.config import JobyardConfig, ScheduleConfig
from jobyard.core.enqueue import EnqueueRequest, PreparedJob, prepare
from jobyard.core.registry import Registry
from jobyard.core.schedules import Decision, Verdict, decide
from jobyard.observability import metrics

log = logging.getLogger("jobyard.beat")

SCHEDULE_HEADER = "jobyard_schedule"
"""Message header: the name of the schedule that sent the job."""
SCHEDULE_DUE_HEADER = "jobyard_schedule_due_at"
"""Message header: the due time (unix seconds) of the run the job is."""


@dataclass(frozen=True)
class Applied:
    """A decision this beat carried out."""

    schedule: str
    verdict: Verdict
    job_id: str | None = None


def format_time(ts: float) -> str:
    """ISO 8601 UTC, to the millisecond, for log lines."""
    return datetime.fromtimestamp(ts, UTC).isoformat(timespec="milliseconds")


def parse_last_run(raw: bytes | str | None) -> float | None:
    """A last-run value as stored (`repr` of a float); None when absent or unreadable."""
    if raw is None:
        return None
    try:
        return float(raw)
    except ValueError:
        log.warning("ignoring unreadable schedule last-run value %r", raw)
        return None


class ScheduleSender:
    """Decides and sends the enabled schedules of `config`."""

    def __init__(
        self,
        client: redis.Redis,
        app: Celery,
        config: JobyardConfig,
        registry: Registry,
        state: BeatState,
    ) -> None:
        self.client = client
        self.app = app
        self.config = config
        self.registry = registry
        self.state = state
        self.schedules = [s for s in config.schedules if s.enabled]

    def tick(self, now: float) -> list[Applied]:
        """Send or skip every schedule due at `now`; return what was done."""
        if not self.schedules:
            return []
        raws = self.client.mget([keys.schedule_last_run(s.name) for s in self.schedules])
        done: list[Applied] = []
        for schedule, raw in zip(self.schedules, raws, strict=True):
            verdict = decide(
                schedule, parse_last_run(raw), now, grace_s=self.config.beat.missed_grace_s
            )
            if verdict.decision is Decision.WAIT:
                continue
            try:
                applied = self.apply(schedule, raw, verdict, now)
            except redis.RedisError:
                raise
            except Exception:
                # One broken schedule must not stop the others.
                log.exception("schedule %s: sending failed", schedule.name)
                continue
            if applied is not None:
                self._record(applied)
                done.append(applied)
        return done

    def apply(
        self, schedule: ScheduleConfig, read: Any, verdict: Verdict, now: float
    ) -> Applied | None:
        """Carry out `verdict` if the last-run key still holds `read`; None if it moved."""
        key = keys.schedule_last_run(schedule.name)
        job = self._prepare(schedule, verdict, now) if verdict.decision is Decision.SEND else None

        done: list[bool] = []

        def transaction(pipe: Any) -> None:
            done.clear()
            if pipe.get(key) != read:
                return  # another beat dealt with this run
            pipe.multi()
            pipe.set(key, repr(verdict.due_at))
            if job is not None:
                store.plan_enqueue(
                    pipe, job.record, job.message, result_ttl_s=self.config.limits.result_ttl_s
                )
            done.append(True)

        # WATCH key; the callback compares; EXEC fails (and the callback reruns) if the
        # key changed after the WATCH.
        self.client.transaction(transaction, key)
        if not done:
            log.info(
                "schedule %s: run due %s already dealt with by another beat",
                schedule.name,
                format_time(verdict.due_at),
                extra={"schedule": schedule.name, "due_at": verdict.due_at},
            )
            return None
        if job is not None:
            metrics.count_enqueued(job.record.queue, job.record.task)
        return Applied(schedule.name, verdict, job.record.id if job else None)

    def _prepare(self, schedule: ScheduleConfig, verdict: Verdict, now: float) -> PreparedJob:
        request = EnqueueRequest(
            task=schedule.task,
            args=dict(schedule.args),
            queue=schedule.queue,
            headers={SCHEDULE_HEADER: schedule.name, SCHEDULE_DUE_HEADER: verdict.due_at},
        )
        return prepare(self.app, self.config, self.registry, request, now=now)

    def _record(self, applied: Applied) -> None:
        name, verdict = applied.schedule, applied.verdict
        extra: dict[str, Any] = {
            "schedule": name,
            "due_at": verdict.due_at,
            "decision": verdict.decision.value,
        }
        if verdict.merged:
            assert verdict.oldest_due_at is not None
            extra["oldest_due_at"] = verdict.oldest_due_at
        if verdict.decision is Decision.SEND:
            assert applied.job_id is not None
            self.state.last_run_at[name] = verdict.due_at
            self.state.runs_sent[name] = self.state.runs_sent.get(name, 0) + 1
            extra["job_id"] = applied.job_id
            caught_up = (
                f" (catch-up for runs due since {format_time(verdict.oldest_due_at)})"
                if verdict.merged and verdict.oldest_due_at is not None
                else ""
            )
            log.info(
                "schedule %s sent job %s due %s%s",
                name,
                applied.job_id,
                format_time(verdict.due_at),
                caught_up,
                extra=extra,
            )
        elif verdict.decision is Decision.SKIP:
            self.state.runs_skipped[name] = self.state.runs_skipped.get(name, 0) + 1
            log.warning(
                "schedule %s skipped missed run due %s (missed: skip)",
                name,
                format_time(verdict.due_at),
                extra=extra,
            )
        else:
            log.info(
                "schedule %s first seen; first run at its next fire time after %s",
                name,
                format_time(verdict.due_at),
                extra=extra,
            )
