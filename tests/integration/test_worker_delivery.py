"""The worker starts a job in the round trip that takes its message (`worker.delivery`):
attempts are counted once, headers a producer copied are never trusted, and a Redis that
lost its scripts only costs the fast path. A success is written in the ack's round trip
when the process that ran the job holds its delivery."""

from __future__ import annotations

import functools
import os
from pathlib import Path
from typing import Any

import kombu
import pytest
import redis

from jobyard.core import keys, store, transport
from jobyard.core.bootstrap import bootstrap
from jobyard.core.celery_app import create_celery
from jobyard.core.enqueue import EnqueueRequest, prepare
from jobyard.core.redis import CommandBatch
from jobyard.worker import delivery
from tests.support.processes import wait_until

pytestmark = pytest.mark.integration


class Enqueuer:
    def __init__(self, redis_url: str, config_path: Path, client: redis.Redis) -> None:
        self.rt = bootstrap({"JOBYARD_REDIS_URL": redis_url, "JOBYARD_CONFIG": str(config_path)})
        self.app = create_celery(self.rt.settings, self.rt.config, self.rt.registry)
        self.client = client

    def enqueue(self, headers: dict[str, Any] | None = None) -> str:
        job = prepare(
            self.app,
            self.rt.config,
            self.rt.registry,
            EnqueueRequest("jobyard.noop", headers=headers or {}),
        )
        pipe = self.client.pipeline()
        store.plan_enqueue(pipe, job.record, job.message, result_ttl_s=60)
        pipe.execute()
        return job.record.id

    def wait_succeeded(self, job_id: str) -> dict[bytes, bytes]:
        wait_until(lambda: self.client.hget(keys.job(job_id), "state") == b"succeeded")
        return self.client.hgetall(keys.job(job_id))


@pytest.fixture
def enqueuer(redis_url: str, config_path: Path, redis_client: redis.Redis) -> Enqueuer:
    return Enqueuer(redis_url, config_path, redis_client)


@pytest.mark.parametrize("pool", ["solo", "prefork"])
def test_copied_start_headers_are_ignored(
    spawn: Any, enqueuer: Enqueuer, redis_client: redis.Redis, pool: str
) -> None:
    worker = spawn("worker", "--queue", "default", "--pool", pool)
    worker.wait_for_log(" ready.")
    # As if copied from an earlier delivery into a new message: must not skip the run.
    forged = enqueuer.enqueue({"jobyard_start": "succeeded", "jobyard_attempts": 7})
    # A due ETA: the worker starts it in the task, where only stripped headers are safe.
    forged_eta = enqueuer.enqueue(
        {"jobyard_start": "succeeded", "jobyard_attempts": 7, "eta": "2020-01-01T00:00:00+00:00"}
    )
    plain = enqueuer.enqueue()
    for job_id in (forged, forged_eta, plain):
        record = enqueuer.wait_succeeded(job_id)
        assert record[b"attempts"] == b"1"
        assert b"started_at" in record and b"finished_at" in record
    assert redis_client.zcard(keys.running("default")) == 0
    assert redis_client.hlen(keys.KOMBU_UNACKED) == 0
    assert redis_client.zcard(keys.KOMBU_UNACKED_INDEX) == 0


def test_lost_scripts_fall_back_to_starting_in_the_task(
    spawn: Any, enqueuer: Enqueuer, redis_client: redis.Redis
) -> None:
    worker = spawn("worker", "--queue", "default", "--pool", "solo")
    worker.wait_for_log(" ready.")
    first = enqueuer.enqueue()
    assert enqueuer.wait_succeeded(first)[b"attempts"] == b"1"
    redis_client.script_flush()  # what a Redis restart does to loaded scripts
    ids = [enqueuer.enqueue() for _ in range(3)]
    for job_id in ids:
        record = enqueuer.wait_succeeded(job_id)
        assert (record[b"attempts"], record[b"state"]) == (b"1", b"succeeded")
    assert redis_client.hlen(keys.KOMBU_UNACKED) == 0


def _delivered(redis_url: str, monkeypatch: pytest.MonkeyPatch) -> tuple[Any, Any, str]:
    """A channel of jobyard's transport holding one delivered, unacknowledged message."""
    monkeypatch.setattr(transport.Channel, "QoS", delivery.JobyardQoS)
    conn = kombu.Connection(redis_url, transport=transport.Transport)
    channel = conn.channel()
    channel.queue_declare("default")
    channel.basic_publish(channel.prepare_message("{}", headers={}), "", "default")
    message = channel.basic_get("default", no_ack=False)
    assert message is not None
    return conn, channel, message.delivery_tag


def test_success_write_joins_the_ack_round_trip(
    redis_url: str, redis_client: redis.Redis, monkeypatch: pytest.MonkeyPatch
) -> None:
    conn, channel, tag = _delivered(redis_url, monkeypatch)
    qos = channel.qos
    assert isinstance(qos, delivery.JobyardQoS)
    assert redis_client.hlen(keys.KOMBU_UNACKED) == 1
    executed: list[int] = []

    class CountingBatch(CommandBatch):
        def execute(self) -> list[Any]:
            executed.append(len(self))
            return super().execute()

    monkeypatch.setattr(delivery, "CommandBatch", CountingBatch)
    plan = functools.partial(
        store.plan_succeeded, job_id="j1", queue="default", result=7, result_ttl_s=60
    )
    assert delivery.defer_to_ack(tag, plan) is True
    assert redis_client.exists(keys.job("j1")) == 0  # nothing written before the ack
    channel.basic_ack(tag)
    # One round trip: the success write (HSET, HDEL, EXPIRE, 2 ZREM) and the ack (ZREM, HDEL).
    assert executed == [7]
    assert redis_client.hget(keys.job("j1"), "state") == b"succeeded"
    assert redis_client.hlen(keys.KOMBU_UNACKED) == 0
    assert redis_client.zcard(keys.KOMBU_UNACKED_INDEX) == 0
    conn.release()


def test_nothing_is_deferred_to_a_delivery_this_process_does_not_hold(
    redis_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    conn, channel, tag = _delivered(redis_url, monkeypatch)

    def plan(pipe: Any) -> None:
        raise AssertionError("must not be deferred")

    assert delivery.defer_to_ack("not-a-delivered-tag", plan) is False
    assert delivery.defer_to_ack(None, plan) is False
    # A prefork child inherits its parent's QoS with the parent's deliveries in it: the
    # parent acknowledges those, so the child must write itself.
    pid = os.fork()
    if pid == 0:
        os._exit(0 if delivery.defer_to_ack(tag, plan) is False else 1)
    _, status = os.waitpid(pid, 0)
    assert os.waitstatus_to_exitcode(status) == 0
    channel.basic_ack(tag)
    conn.release()


@pytest.mark.parametrize("pool", ["solo", "prefork"])
def test_a_busy_queue_is_taken_with_the_script_and_bad_entries_are_refused(
    spawn: Any, enqueuer: Enqueuer, redis_client: redis.Redis, pool: str
) -> None:
    # Queued before the worker starts: its first poll is a BRPOP, every later one the
    # take script, which must cope with entries that are not envelopes.
    first = enqueuer.enqueue()
    redis_client.lpush("default", b"\xff not json")
    redis_client.lpush("default", '{"not": "an envelope"}')
    rest = [enqueuer.enqueue() for _ in range(20)]
    redis_client.config_resetstat()
    worker = spawn("worker", "--queue", "default", "--pool", pool)
    for job_id in (first, *rest):
        record = enqueuer.wait_succeeded(job_id)
        assert (record[b"attempts"], record[b"state"]) == (b"1", b"succeeded")
    stats = redis_client.info("commandstats")
    # RPOP runs only inside the take script: it took most of the 22 entries.
    assert stats.get("cmdstat_rpop", {}).get("calls", 0) >= 15, stats.get("cmdstat_rpop")
    assert stats.get("cmdstat_brpop", {}).get("calls", 0) < 10
    log = worker.log()
    assert "the queue entry is not JSON (queue 'default'" in log
    assert "the queue entry is not a valid message: no 'properties' object" in log
    assert redis_client.zcard(keys.dead_letters("default")) == 2
    assert worker.popen.poll() is None
    assert redis_client.llen("default") == 0
    assert redis_client.hlen(keys.KOMBU_UNACKED) == 0
    assert redis_client.zcard(keys.running("default")) == 0
