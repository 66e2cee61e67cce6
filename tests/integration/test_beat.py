"""Real `jobyard beat` processes: one leader, each run sent once, failover, catch-up,
delayed jobs, unacked restore, and refusal of a bad schedule."""

from __future__ import annotations

import itertools
import json
import math
import os
import re
import signal
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import redis
from pydantic import BaseModel

from jobyard.beat.sender import SCHEDULE_DUE_HEADER, SCHEDULE_HEADER
from jobyard.core import keys, store
from jobyard.core.bootstrap import bootstrap
from jobyard.core.celery_app import create_celery
from jobyard.core.context import JobContext
from jobyard.core.enqueue import EnqueueRequest, PreparedJob, prepare
from jobyard.core.registry import Registry, RetryPolicy, job
from tests.support.processes import Proc, wait_until

pytestmark = pytest.mark.integration

LEASE_TTL_S = 3.0
TICK_S = 0.25
VISIBILITY_TIMEOUT_S = 4.5

BASE = f"""
queues:
  - name: default
    soft_time_limit_s: 2
    time_limit_s: 3
    shutdown_grace_s: 2
  - name: emails
    soft_time_limit_s: 2
    time_limit_s: 3
  - name: reports
    soft_time_limit_s: 2
    time_limit_s: 3
broker:
  visibility_timeout_s: {VISIBILITY_TIMEOUT_S}
  max_retry_backoff_s: 1
"""


NO_METRICS = {"JOBYARD_BEAT_METRICS_PORT": "0"}
"""Two beats on one host would compete for the default metrics port."""


def beat_section(**extra: float) -> str:
    values = {"lease_ttl_s": LEASE_TTL_S, "tick_s": TICK_S, "restore_interval_s": 0.5, **extra}
    return "beat:\n" + "".join(f"  {k}: {v}\n" for k, v in values.items())


@dataclass(frozen=True)
class Run:
    """One schedule run found in a queue list."""

    schedule: str
    due_at: float
    job_id: str
    enqueued_at: float


def runs(client: redis.Redis, queue: str, schedule: str) -> list[Run]:
    """The runs of `schedule` waiting in `queue` (no worker consumes it), by due time."""
    out = []
    for raw in client.lrange(queue, 0, -1):
        headers = json.loads(raw)["headers"]
        if headers.get(SCHEDULE_HEADER) != schedule:
            continue
        enqueued = client.hget(keys.job(headers["id"]), "enqueued_at")
        out.append(
            Run(schedule, headers[SCHEDULE_DUE_HEADER], headers["id"], float(enqueued or "nan"))
        )
    return sorted(out, key=lambda r: r.due_at)


def beat_id(proc: Proc) -> str:
    proc.wait_for_log(" started: ")
    match = re.search(r"beat (\S+) started", proc.log())
    assert match, proc.log()
    return match.group(1)


def lease(client: redis.Redis) -> str | None:
    raw = client.get(keys.BEAT_LEASE)
    return raw.decode() if raw else None


def missing_on_grid(dues: list[float], interval_s: float) -> list[float]:
    """Grid points between the first and last due time that have no run."""
    start = dues[0]
    steps = [(d - start) / interval_s for d in dues]
    assert all(abs(s - round(s)) < 1e-6 for s in steps), f"runs off their grid: {dues}"
    present = {round(s) for s in steps}
    return [start + k * interval_s for k in range(round(steps[-1]) + 1) if k not in present]


def assert_sent_once_on_time(found: list[Run], interval_s: float) -> None:
    dues = [r.due_at for r in found]
    assert len(set(dues)) == len(dues), f"a run was sent twice: {dues}"
    assert len({r.job_id for r in found}) == len(found)
    gaps = [b - a for a, b in itertools.pairwise(dues)]
    assert all(g >= interval_s - 1e-6 for g in gaps), f"runs closer than {interval_s} s: {gaps}"
    for r in found:
        assert 0 <= r.enqueued_at - r.due_at < 3, f"run due {r.due_at} sent at {r.enqueued_at}"


class LeaseWatch:
    """Samples the lease every 20 ms from a thread."""

    def __init__(self, url: str) -> None:
        self.client = redis.Redis.from_url(url)
        self.samples: list[tuple[float, str | None]] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while not self._stop.is_set():
            self.samples.append((time.time(), lease(self.client)))
            self._stop.wait(0.02)

    def stop(self) -> list[str | None]:
        """Stop; return the successive distinct values seen."""
        self._stop.set()
        self._thread.join()
        self.client.close()
        changes: list[str | None] = []
        for _, value in self.samples:
            if not changes or changes[-1] != value:
                changes.append(value)
        return changes


def test_two_beats_send_each_run_once_and_hand_over_cleanly(
    spawn: Any, redis_url: str, config_path: Path, redis_client: redis.Redis
) -> None:
    config_path.write_text(
        BASE
        + beat_section()
        + """schedules:
  - name: every-second
    task: jobyard.noop
    interval_s: 1
  - name: every-two
    task: jobyard.noop
    interval_s: 2
    queue: emails
  - name: every-minute
    task: jobyard.noop
    cron: "* * * * *"
    queue: reports
"""
    )
    first, second = spawn("beat", env=NO_METRICS), spawn("beat", env=NO_METRICS)
    ids = {beat_id(first): first, beat_id(second): second}
    watch = LeaseWatch(redis_url)
    leader_id = wait_until(lambda: lease(redis_client), timeout_s=10)
    leader = ids[leader_id]
    standby_id = next(i for i in ids if i != leader_id)
    time.sleep(10)  # both beats race for 10 s

    t_term = time.monotonic()
    leader.send_signal(signal.SIGTERM)
    assert leader.popen.wait(timeout=5) == 0
    exited_s = time.monotonic() - t_term
    wait_until(lambda: lease(redis_client) == standby_id, timeout_s=5, interval_s=0.01)
    handover_s = time.monotonic() - t_term - exited_s
    time.sleep(2.5)  # the new leader sends on
    assert ids[standby_id].stop() == 0
    t_end = time.time()
    changes = watch.stop()

    assert exited_s < 2, f"leader took {exited_s:.2f} s to exit on SIGTERM"
    assert handover_s < 2 * TICK_S + 1, f"standby took {handover_s:.2f} s after the release"
    assert "leader released the lease" in leader.log()
    # At most one leader at any moment: the lease only ever went leader -> (free) -> standby.
    assert [c for c in changes if c is not None] == [leader_id, standby_id], changes
    assert leader.log().count("leader acquired") == 1
    assert ids[standby_id].log().count("leader acquired") == 1

    every_second = runs(redis_client, "default", "every-second")
    every_two = runs(redis_client, "emails", "every-two")
    for found, interval_s in ((every_second, 1.0), (every_two, 2.0)):
        assert_sent_once_on_time(found, interval_s)
        dues = [r.due_at for r in found]
        # A clean handover loses nothing, or one run merged if the standby's tick was late.
        assert len(missing_on_grid(dues, interval_s)) <= 1, dues
        expected = (t_end - dues[0]) / interval_s
        assert abs(len(found) - expected) <= 2, (len(found), expected)
    # A job record per run, and nothing else was enqueued.
    assert redis_client.zcard(keys.recent("default")) == len(every_second)
    assert redis_client.zcard(keys.recent("emails")) == len(every_two)

    # Cron: every minute boundary after the first tick, once (there may be none).
    first_tick = every_second[0].due_at
    minute_dues = [r.due_at for r in runs(redis_client, "reports", "every-minute")]
    boundaries = [m * 60.0 for m in range(math.floor(first_tick / 60) + 1, int(t_end // 60) + 1)]
    settled = [b for b in boundaries if b < t_end - 1.5]
    assert settled == minute_dues[: len(settled)]
    assert set(minute_dues) <= set(boundaries)
    assert redis_client.zcard(keys.recent("reports")) == len(minute_dues)


def test_standby_takes_over_a_killed_leader_within_the_lease(
    spawn: Any, redis_client: redis.Redis, config_path: Path
) -> None:
    config_path.write_text(
        BASE
        + beat_section()
        + "schedules:\n  - name: every-second\n    task: jobyard.noop\n    interval_s: 1\n"
    )
    first, second = spawn("beat", env=NO_METRICS), spawn("beat", env=NO_METRICS)
    ids = {beat_id(first): first, beat_id(second): second}
    leader_id = wait_until(lambda: lease(redis_client), timeout_s=10)
    standby_id = next(i for i in ids if i != leader_id)
    wait_until(lambda: len(runs(redis_client, "default", "every-second")) >= 3, timeout_s=10)

    ids[leader_id].kill_group(signal.SIGKILL)
    t_kill = time.time()
    last_tick = float(redis_client.get(keys.BEAT_LAST_TICK) or 0)
    wait_until(lambda: lease(redis_client) == standby_id, timeout_s=10, interval_s=0.01)
    t_taken = time.time()
    sent_before = len(runs(redis_client, "default", "every-second"))
    wait_until(
        lambda: len(runs(redis_client, "default", "every-second")) >= sent_before + 3,
        timeout_s=10,
    )
    assert ids[standby_id].stop() == 0

    takeover_s = t_taken - t_kill
    assert takeover_s < LEASE_TTL_S + 2, f"standby took {takeover_s:.2f} s"
    # ...and not before the dead leader's lease ran out (it was renewed at its last tick).
    assert t_taken >= last_tick + LEASE_TTL_S - 0.05, (t_taken, last_tick)
    found = runs(redis_client, "default", "every-second")
    assert_sent_once_on_time(found, 1.0)
    dues = [r.due_at for r in found]
    missing = missing_on_grid(dues, 1.0)
    # Documented bound: runs due while nobody led merge into one catch-up run, at most
    # ceil((lease_ttl_s + tick_s) / interval_s) - 1 lost; the test allows the 2 s slack
    # it allows the takeover.
    assert len(missing) <= math.ceil(LEASE_TTL_S + 2) - 1, missing
    assert all(last_tick - 1 < m < t_taken for m in missing), (missing, last_tick, t_taken)
    if missing:
        assert "(catch-up for runs due since" in ids[standby_id].log()


def test_restart_catches_up_with_one_run_or_skips_by_policy(
    spawn: Any, redis_client: redis.Redis, config_path: Path
) -> None:
    config_path.write_text(
        BASE
        + beat_section(missed_grace_s=2)
        + """schedules:
  - name: catch-up
    task: jobyard.noop
    interval_s: 1
  - name: skipper
    task: jobyard.noop
    interval_s: 10
    missed: skip
    queue: emails
"""
    )
    before = spawn("beat", env=NO_METRICS)
    wait_until(lambda: len(runs(redis_client, "default", "catch-up")) >= 2, timeout_s=15)
    assert before.stop() == 0
    last_before = runs(redis_client, "default", "catch-up")[-1].due_at
    [skipper_first] = runs(redis_client, "emails", "skipper")
    time.sleep(3.5)  # beat is down: the catch-up runs due +1, +2, +3 s are missed

    # skipper: pretend its last run was 13 s ago, so the run due 3 s ago was missed
    # (older than the 2 s grace) and the next one is due in 7 s.
    t_seed = time.time()
    redis_client.set(keys.schedule_last_run("skipper"), repr(t_seed - 13))
    after = spawn("beat", env=NO_METRICS)
    after.wait_for_log("schedule skipper skipped missed run")
    wait_until(lambda: len(runs(redis_client, "emails", "skipper")) == 2, timeout_s=15)
    assert after.stop() == 0
    t_stopped = time.time()

    catch_up = runs(redis_client, "default", "catch-up")
    assert_sent_once_on_time(catch_up, 1.0)
    later = [r.due_at for r in catch_up if r.due_at > last_before]
    # One catch-up run, due at the latest missed time (after the restart), then the grid.
    assert later[0] >= t_seed - 1, (later[0], t_seed)
    assert later == pytest.approx([later[0] + k for k in range(len(later))], abs=1e-6)
    assert later[-1] > t_stopped - 2, "sent on schedule until stopped"
    assert after.log().count("(catch-up for runs due since") == 1

    skipper = runs(redis_client, "emails", "skipper")
    assert skipper[0] == skipper_first
    assert skipper[1].due_at == pytest.approx(t_seed + 7, abs=1e-6)
    assert float(redis_client.get(keys.schedule_last_run("skipper")) or 0) == pytest.approx(
        t_seed + 7, abs=1e-6
    )


def _enqueue_delayed(
    client: redis.Redis, redis_url: str, config_path: Path, eta: float, queue: str
) -> PreparedJob:
    rt = bootstrap({"JOBYARD_REDIS_URL": redis_url, "JOBYARD_CONFIG": str(config_path)})
    app = create_celery(rt.settings, rt.config, rt.registry)
    job = prepare(app, rt.config, rt.registry, EnqueueRequest("jobyard.noop", queue=queue, eta=eta))
    pipe = client.pipeline()
    store.plan_enqueue(pipe, job.record, job.message, result_ttl_s=600)
    pipe.execute()
    app.close()
    return job


def test_delayed_jobs_are_queued_when_due_and_cancelled_ones_are_dropped(
    spawn: Any, redis_url: str, redis_client: redis.Redis, config_path: Path
) -> None:
    config_path.write_text(BASE + beat_section())
    beat = spawn("beat", env=NO_METRICS)
    worker = spawn("worker", "--queue", "default", env={"JOBYARD_WORKER_METRICS_PORT": "0"})
    beat.wait_for_log("leader acquired")
    worker.wait_for_log(" ready.", timeout_s=30)

    eta = time.time() + 1.5
    runs_on_worker = _enqueue_delayed(redis_client, redis_url, config_path, eta, "default")
    parked = _enqueue_delayed(redis_client, redis_url, config_path, eta, "emails")
    cancelled = _enqueue_delayed(redis_client, redis_url, config_path, eta - 0.5, "default")
    pipe = redis_client.pipeline()
    store.plan_cancelled(pipe, cancelled.record.id, "default")
    pipe.execute()
    racing = _enqueue_delayed(redis_client, redis_url, config_path, eta - 0.5, "default")
    redis_client.hset(keys.job(racing.record.id), "state", "cancelled")
    assert redis_client.hget(keys.job(parked.record.id), "state") == b"scheduled"

    def state(delayed: PreparedJob) -> bytes | None:
        return redis_client.hget(keys.job(delayed.record.id), "state")

    wait_until(lambda: state(runs_on_worker) == b"succeeded", timeout_s=15)
    started_at = float(redis_client.hget(keys.job(runs_on_worker.record.id), "started_at") or 0)
    assert started_at >= eta
    wait_until(lambda: state(parked) == b"queued", timeout_s=5)
    [waiting] = redis_client.lrange("emails", 0, -1)
    assert json.loads(waiting)["headers"]["id"] == parked.record.id
    assert (state(cancelled), state(racing)) == (b"cancelled", b"cancelled")
    for dropped in (cancelled, racing):
        record = redis_client.hgetall(keys.job(dropped.record.id))
        assert (record[b"attempts"], record.get(b"started_at")) == (b"0", None), "never ran"
    assert redis_client.zcard(keys.SCHEDULED) == 0
    assert redis_client.hlen(keys.SCHEDULED_MESSAGES) == 0
    assert "promoted" in beat.log()


SLEEPY_JOBS = '''
"""A job for the unacked-restore test: slow the first time, quick when redelivered."""

import time
from pathlib import Path

from pydantic import BaseModel

from jobyard.core.context import JobContext
from jobyard.core.registry import RetryPolicy, job


class SleepyArgs(BaseModel):
    marker: str
    seconds: float


# Two attempts: the redelivery after the SIGKILL is the second start.
@job("beattest.sleepy", args=SleepyArgs, queue="default", retry=RetryPolicy(max_attempts=2))
def sleepy(ctx: JobContext, args: SleepyArgs) -> str:
    marker = Path(args.marker)
    if marker.exists():
        return "second run"
    marker.write_text(ctx.job_id)
    time.sleep(args.seconds)
    return "first run"
'''


def test_beat_restores_unacked_messages_of_a_queue_with_no_worker(
    spawn: Any, redis_url: str, redis_client: redis.Redis, config_path: Path, tmp_path: Path
) -> None:
    config_path.write_text(BASE + beat_section())
    modules = tmp_path / "modules"
    modules.mkdir()
    (modules / "beat_sleepy_jobs.py").write_text(SLEEPY_JOBS)
    env = {
        "JOBYARD_WORKER_METRICS_PORT": "0",
        "JOBYARD_JOB_MODULES": "beat_sleepy_jobs",
        "PYTHONPATH": os.pathsep.join(p for p in (str(modules), os.environ.get("PYTHONPATH")) if p),
    }
    worker = spawn("worker", "--queue", "default", env=env)
    beat = spawn("beat", env={**env, **NO_METRICS})
    worker.wait_for_log(" ready.", timeout_s=30)
    beat.wait_for_log("leader acquired")

    marker = tmp_path / "ran-once"
    # The same job, registered in this process under the name the worker knows.
    registry = Registry()
    job("beattest.sleepy", args=SleepyArgs, retry=RetryPolicy(max_attempts=2), registry=registry)(
        _never_called
    )
    rt = bootstrap({"JOBYARD_REDIS_URL": redis_url, "JOBYARD_CONFIG": str(config_path)})
    app = create_celery(rt.settings, rt.config, registry)
    args = {"marker": str(marker), "seconds": 30}
    sleepy = prepare(app, rt.config, registry, EnqueueRequest("beattest.sleepy", args=args))
    app.close()
    pipe = redis_client.pipeline()
    store.plan_enqueue(pipe, sleepy.record, sleepy.message, result_ttl_s=600)
    pipe.execute()
    record = sleepy.record

    wait_until(marker.exists, timeout_s=15, interval_s=0.02)
    worker.kill_group(signal.SIGKILL)  # mid-job, before its 2 s soft limit
    worker.popen.wait(timeout=5)
    assert redis_client.hlen(keys.KOMBU_UNACKED) == 1
    [(_, delivered_at)] = redis_client.zrange(keys.KOMBU_UNACKED_INDEX, 0, -1, withscores=True)
    assert redis_client.llen("default") == 0

    wait_until(lambda: redis_client.llen("default") == 1, timeout_s=15, interval_s=0.02)
    restored_at = time.time()
    assert restored_at >= delivered_at + VISIBILITY_TIMEOUT_S, "restored before it expired"
    assert redis_client.hlen(keys.KOMBU_UNACKED) == 0
    assert redis_client.zcard(keys.KOMBU_UNACKED_INDEX) == 0
    beat.wait_for_log("restored 1 unacked message(s)")

    spawn("worker", "--queue", "default", env=env).wait_for_log(" ready.", timeout_s=30)
    wait_until(
        lambda: redis_client.hget(keys.job(record.id), "state") == b"succeeded", timeout_s=15
    )
    assert redis_client.hget(keys.job(record.id), "result") == b'"second run"'
    assert redis_client.hget(keys.job(record.id), "attempts") == b"2"


class SleepyArgs(BaseModel):
    marker: str
    seconds: float


def _never_called(ctx: JobContext, args: SleepyArgs) -> None:
    raise AssertionError("runs in the worker, from beat_sleepy_jobs")


@pytest.mark.parametrize(
    ("config", "expected"),
    [
        (
            "schedules:\n  - name: a\n    task: nope.nothing\n    interval_s: 60\n",
            "schedules[0].task: unknown task 'nope.nothing'; registered tasks: ",
        ),
        (
            "schedules:\n  - name: a\n    task: jobyard.noop\n    interval_s: 60\n"
            "    args: {colour: red}\n",
            "schedules[0].args.colour: unknown key (check its spelling) (got 'red')",
        ),
        (
            "beat:\n  lease_ttl_s: 3\n  tick_s: 2\n",
            "beat: Value error, tick_s (2) must be at most a third of lease_ttl_s (3)",
        ),
    ],
)
def test_bad_schedule_config_stops_beat_with_a_message_naming_the_field(
    spawn: Any, config_path: Path, redis_client: redis.Redis, config: str, expected: str
) -> None:
    config_path.write_text(BASE + config)
    proc = spawn("beat", env=NO_METRICS)
    assert proc.popen.wait(timeout=30) == 2
    assert f"{config_path}: {expected}" in proc.log()
    assert redis_client.exists(keys.BEAT_LEASE) == 0
