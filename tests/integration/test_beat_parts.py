"""Beat's parts against a real Redis, in process: lease, schedule CAS, delayed jobs, ticks."""

from __future__ import annotations

import base64
import json
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import redis
from celery import Celery

from jobyard.beat.delayed import DelayedJobs
from jobyard.beat.lease import Lease
from jobyard.beat.main import Beat
from jobyard.beat.sender import SCHEDULE_DUE_HEADER, SCHEDULE_HEADER, ScheduleSender
from jobyard.beat.state import BeatState
from jobyard.core import keys, store
from jobyard.core.bootstrap import Runtime, bootstrap
from jobyard.core.celery_app import create_celery
from jobyard.core.enqueue import EnqueueRequest, PreparedJob, prepare
from jobyard.core.schedules import Decision, decide
from tests.support.processes import wait_until

pytestmark = pytest.mark.integration

CONFIG = """
queues:
  - name: default
    soft_time_limit_s: 2
    time_limit_s: 3
  - name: emails
    soft_time_limit_s: 2
    time_limit_s: 3
broker:
  max_retry_backoff_s: 1
beat:
  lease_ttl_s: 3
  tick_s: 0.25
schedules:
  - name: ten
    task: jobyard.noop
    interval_s: 10
  - name: to-emails
    task: jobyard.noop
    interval_s: 5
    queue: emails
  - name: quarter
    task: jobyard.noop
    cron: "*/15 * * * *"
  - name: paused
    task: jobyard.noop
    interval_s: 1
    enabled: false
"""


@pytest.fixture
def runtime(redis_url: str, config_path: Path) -> Runtime:
    config_path.write_text(CONFIG)
    return bootstrap({"JOBYARD_REDIS_URL": redis_url, "JOBYARD_CONFIG": str(config_path)})


@pytest.fixture
def app(runtime: Runtime) -> Iterator[Celery]:
    celery = create_celery(runtime.settings, runtime.config, runtime.registry)
    yield celery
    celery.close()


def messages(client: redis.Redis, queue: str) -> list[dict[str, Any]]:
    """Every message waiting in `queue`'s base list, oldest first, with its body decoded."""
    out = []
    for raw in reversed(client.lrange(queue, 0, -1)):
        envelope = json.loads(raw)
        envelope["body"] = json.loads(base64.b64decode(envelope["body"]))
        out.append(envelope)
    return out


def sender(client: redis.Redis, app: Celery, runtime: Runtime, name: str = "b") -> ScheduleSender:
    return ScheduleSender(client, app, runtime.config, runtime.registry, BeatState(name))


# --- lease --------------------------------------------------------------------------------


def test_lease_has_one_holder_and_only_the_holder_renews_or_releases(
    redis_client: redis.Redis,
) -> None:
    a, b = Lease(redis_client, "beat-a", 3), Lease(redis_client, "beat-b", 3)
    assert a.hold() is True
    assert b.hold() is False
    assert (a.holder(), a.held, b.held) == ("beat-a", True, False)
    assert 2000 < redis_client.pttl(keys.BEAT_LEASE) <= 3000

    redis_client.pexpire(keys.BEAT_LEASE, 400)
    assert b.hold() is False
    assert redis_client.pttl(keys.BEAT_LEASE) <= 400, "a standby must not extend the lease"
    assert a.hold() is True
    assert redis_client.pttl(keys.BEAT_LEASE) > 2000, "the holder renews to the full TTL"

    assert b.release() is False
    assert redis_client.get(keys.BEAT_LEASE) == b"beat-a"
    assert a.release() is True
    assert redis_client.exists(keys.BEAT_LEASE) == 0
    assert b.hold() is True
    assert a.hold() is False


def test_lease_expires_and_a_standby_takes_it(redis_client: redis.Redis) -> None:
    a, b = Lease(redis_client, "beat-a", 3), Lease(redis_client, "beat-b", 3)
    assert a.hold()
    redis_client.pexpire(keys.BEAT_LEASE, 100)  # as if `a` stopped renewing 2.9 s ago
    wait_until(lambda: redis_client.exists(keys.BEAT_LEASE) == 0, timeout_s=5)
    assert b.hold() is True
    assert a.hold() is False
    assert a.held is False


# --- schedules ----------------------------------------------------------------------------


def test_tick_sends_due_interval_runs_and_starts_cron_schedules(
    redis_client: redis.Redis, app: Celery, runtime: Runtime
) -> None:
    s = sender(redis_client, app, runtime)
    now = 1_800_000_000.0
    done = s.tick(now)
    assert [(a.schedule, a.verdict.decision, a.verdict.due_at) for a in done] == [
        ("ten", Decision.SEND, now),
        ("to-emails", Decision.SEND, now),
        ("quarter", Decision.START, now),
    ]
    assert redis_client.get(keys.schedule_last_run("paused")) is None
    assert redis_client.get(keys.schedule_last_run("quarter")) == repr(now).encode()
    [ten] = messages(redis_client, "default")
    [to_emails] = messages(redis_client, "emails")
    assert ten["headers"][SCHEDULE_HEADER] == "ten"
    assert ten["headers"][SCHEDULE_DUE_HEADER] == now
    assert ten["headers"]["task"] == "jobyard.noop"
    assert to_emails["headers"][SCHEDULE_HEADER] == "to-emails"
    record = redis_client.hgetall(keys.job(done[0].job_id or ""))
    assert (record[b"state"], record[b"queue"], record[b"task"]) == (
        b"queued",
        b"default",
        b"jobyard.noop",
    )
    assert float(record[b"enqueued_at"]) == now
    assert s.state.runs_sent == {"ten": 1, "to-emails": 1}
    assert s.state.last_run_at == {"ten": now, "to-emails": now}

    assert s.tick(now + 4.9) == []
    later = s.tick(now + 10.2)
    assert [(a.schedule, a.verdict.due_at) for a in later] == [
        ("ten", now + 10),
        ("to-emails", now + 10),
    ]
    assert [m["headers"][SCHEDULE_DUE_HEADER] for m in messages(redis_client, "default")] == [
        now,
        now + 10,
    ]


def test_two_senders_with_the_same_stale_read_send_once(
    redis_client: redis.Redis, app: Celery, runtime: Runtime
) -> None:
    ten = runtime.config.schedules[0]
    last = 1_800_000_000.0
    redis_client.set(keys.schedule_last_run("ten"), repr(last))
    read = redis_client.get(keys.schedule_last_run("ten"))
    verdict = decide(ten, last, last + 10.5)
    first, second = sender(redis_client, app, runtime, "a"), sender(redis_client, app, runtime)
    applied = first.apply(ten, read, verdict, last + 10.5)
    assert applied is not None and applied.verdict.due_at == last + 10
    assert second.apply(ten, read, verdict, last + 10.6) is None
    assert redis_client.llen("default") == 1
    assert redis_client.zcard(keys.RECENT) == 1
    assert redis_client.get(keys.schedule_last_run("ten")) == repr(last + 10).encode()


def test_a_change_between_watch_and_exec_aborts_the_send(
    redis_client: redis.Redis,
    redis_url: str,
    app: Celery,
    runtime: Runtime,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Another beat writes the key after our WATCH and compare: EXEC fails, nothing is sent."""
    ten = runtime.config.schedules[0]
    key = keys.schedule_last_run("ten")
    other = redis.Redis.from_url(redis_url)
    original = store.plan_enqueue
    calls: list[int] = []

    def racing_plan_enqueue(pipe: Any, *args: Any, **kwargs: Any) -> None:
        calls.append(1)
        if len(calls) == 1:
            other.set(key, "1800000100.0")  # the other beat's run lands first
        original(pipe, *args, **kwargs)

    monkeypatch.setattr("jobyard.beat.sender.store.plan_enqueue", racing_plan_enqueue)
    verdict = decide(ten, None, 1_800_000_000.0)
    assert sender(redis_client, app, runtime).apply(ten, None, verdict, 1_800_000_000.0) is None
    assert calls == [1], "after the failed EXEC the retry compares again and stops"
    assert redis_client.get(key) == b"1800000100.0"
    assert redis_client.llen("default") == 0
    assert redis_client.zcard(keys.RECENT) == 0
    assert redis_client.keys(keys.job("*")) == []
    other.close()


def test_catch_up_and_skip_through_redis(
    redis_client: redis.Redis, app: Celery, runtime: Runtime, config_path: Path
) -> None:
    config_path.write_text(
        CONFIG.split("schedules:")[0]
        + """schedules:
  - name: catch-up
    task: jobyard.noop
    interval_s: 10
  - name: skipper
    task: jobyard.noop
    interval_s: 3600
    missed: skip
"""
    )
    rt = bootstrap(
        {"JOBYARD_REDIS_URL": runtime.settings.redis_url, "JOBYARD_CONFIG": str(config_path)}
    )
    s = ScheduleSender(redis_client, app, rt.config, rt.registry, BeatState("b"))
    last = 1_800_000_000.0
    redis_client.set(keys.schedule_last_run("catch-up"), repr(last))
    redis_client.set(keys.schedule_last_run("skipper"), repr(last))
    now = last + 3600 + 125  # beat was down an hour and two minutes
    done = s.tick(now)
    assert [(a.schedule, a.verdict.decision, a.verdict.due_at) for a in done] == [
        ("catch-up", Decision.SEND, last + 3720),
        ("skipper", Decision.SKIP, last + 3600),
    ]
    assert done[0].verdict.oldest_due_at == last + 10
    assert [m["headers"][SCHEDULE_DUE_HEADER] for m in messages(redis_client, "default")] == [
        last + 3720
    ]
    assert redis_client.get(keys.schedule_last_run("skipper")) == repr(last + 3600).encode()
    assert s.state.runs_skipped == {"skipper": 1}
    # The next ticks: no burst; the next regular run only.
    assert s.tick(now + 1) == []
    assert [(a.schedule, a.verdict.due_at) for a in s.tick(last + 3730)] == [
        ("catch-up", last + 3730)
    ]


# --- delayed jobs -------------------------------------------------------------------------


def _delayed(
    client: redis.Redis, app: Celery, runtime: Runtime, eta: float, queue: str = "default"
) -> PreparedJob:
    job = prepare(
        app,
        runtime.config,
        runtime.registry,
        EnqueueRequest("jobyard.noop", queue=queue, eta=eta),
        now=eta - 5,
    )
    pipe = client.pipeline()
    store.plan_enqueue(pipe, job.record, job.message, result_ttl_s=60)
    pipe.execute()
    return job


def test_promote_moves_due_jobs_and_drops_cancelled_ones(
    redis_client: redis.Redis, app: Celery, runtime: Runtime
) -> None:
    now = time.time()
    due = _delayed(redis_client, app, runtime, now - 1)
    due_emails = _delayed(redis_client, app, runtime, now - 0.5, queue="emails")
    later = _delayed(redis_client, app, runtime, now + 60)
    cancelled = _delayed(redis_client, app, runtime, now - 1)
    pipe = redis_client.pipeline()
    store.plan_cancelled(pipe, cancelled.record.id, "default")
    pipe.execute()
    racing = _delayed(redis_client, app, runtime, now - 1)
    # Cancelled while beat was about to promote it: the record changed, the entry remained.
    redis_client.hset(keys.job(racing.record.id), "state", "cancelled")

    result = DelayedJobs(redis_client).promote_due(now, budget_s=1)
    assert (result.promoted, result.dropped) == (2, 1)
    assert [m["headers"]["id"] for m in messages(redis_client, "default")] == [due.record.id]
    assert [m["headers"]["id"] for m in messages(redis_client, "emails")] == [due_emails.record.id]
    state = {
        j.record.id: redis_client.hget(keys.job(j.record.id), "state")
        for j in (due, due_emails, later, cancelled, racing)
    }
    assert state == {
        due.record.id: b"queued",
        due_emails.record.id: b"queued",
        later.record.id: b"scheduled",
        cancelled.record.id: b"cancelled",
        racing.record.id: b"cancelled",
    }
    assert redis_client.zrange(keys.SCHEDULED, 0, -1) == [later.record.id.encode()]
    assert redis_client.hkeys(keys.SCHEDULED_MESSAGES) == [later.record.id.encode()]
    assert DelayedJobs(redis_client).promote_due(now, budget_s=1) == type(result)(0, 0)


def test_promote_loops_over_batches_until_nothing_is_due(
    redis_client: redis.Redis, app: Celery, runtime: Runtime
) -> None:
    now = time.time()
    job = prepare(
        app, runtime.config, runtime.registry, EnqueueRequest("jobyard.noop", eta=now + 5)
    )
    pipe = redis_client.pipeline(transaction=False)
    for i in range(1203):
        record = job.record.model_copy(update={"id": f"job-{i}", "eta": now - 1})
        store.plan_enqueue(pipe, record, job.message, result_ttl_s=60)
    pipe.execute()
    result = DelayedJobs(redis_client, batch=500).promote_due(now, budget_s=30)
    assert (result.promoted, result.dropped) == (1203, 0)
    assert redis_client.llen("default") == 1203
    assert redis_client.zcard(keys.SCHEDULED) == 0


# --- the tick ----------------------------------------------------------------------------


def test_only_the_leader_ticks_and_a_clean_shutdown_hands_over(
    redis_client: redis.Redis, app: Celery, runtime: Runtime
) -> None:
    a = Beat(runtime, redis_client, app, state=BeatState("beat-a"))
    b = Beat(runtime, redis_client, app, state=BeatState("beat-b"))
    a.tick()
    b.tick()
    assert (a.state.is_leader, b.state.is_leader) == (True, False)
    assert a.state.last_tick_at is not None and b.state.last_tick_at is None
    assert float(redis_client.get(keys.BEAT_LAST_TICK) or 0) == a.state.last_tick_at
    assert redis_client.llen("default") == 1  # "ten" sent once, by the leader
    b.tick()
    a.tick()
    assert redis_client.llen("default") == 1
    a.shutdown()
    assert redis_client.exists(keys.BEAT_LEASE) == 0
    assert a.state.is_leader is False
    b.tick()
    assert b.state.is_leader is True
    assert redis_client.get(keys.BEAT_LEASE) == b"beat-b"
    assert redis_client.llen("default") == 1, "the new leader reads the last run from Redis"
