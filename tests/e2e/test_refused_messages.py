"""Messages the worker must refuse never vanish and never run: each becomes a dead letter
whose reason names the queue, the task, the message id and the first bytes (escaped).

Pushed straight into a queue list, as anyone with Redis access can: bodies that are not
base64 or not JSON, entries that are not JSON at all, pickle, unknown tasks and Celery's
own built-in tasks (`celery.backend_cleanup`, ...), with a job record waiting for them or
none. Both ways a worker takes a message are covered: the take script (a busy queue:
the message is filed as unacknowledged and its job started in the same round trip) and
BRPOP (an idle queue).
"""

from __future__ import annotations

import base64
import json
import pickle
import time
import uuid
from pathlib import Path
from typing import Any

import pytest

from jobyard.core import keys, store
from jobyard.core.enqueue import EnqueueRequest, prepare
from jobyard.core.messages import BuiltMessage, build_message
from tests.e2e.cluster import VISIBILITY_TIMEOUT_S, Cluster
from tests.e2e.ledger import effect_counts
from tests.support.processes import Proc, wait_until

pytestmark = [pytest.mark.integration, pytest.mark.faults]

QUEUE = "alpha"


def _envelope(
    cluster: Cluster, task: str, kwargs: dict[str, Any], job_id: str | None = None
) -> dict[str, Any]:
    message = build_message(
        cluster.app,
        task_id=job_id or str(uuid.uuid4()),
        task_name=task,
        kwargs=kwargs,
        queue=QUEUE,
        priority=0,
        priority_steps=cluster.runtime.config.broker.priority_steps,
    )
    envelope: dict[str, Any] = json.loads(message.payload)
    return envelope


def _body_not_base64(envelope: dict[str, Any]) -> dict[str, Any]:
    envelope["body"] = "%%% not base64 \x01"
    return envelope


def _body_not_json(envelope: dict[str, Any]) -> dict[str, Any]:
    envelope["body"] = base64.b64encode(b"not json{\x00\xff").decode()
    return envelope


def _pickled(envelope: dict[str, Any]) -> dict[str, Any]:
    envelope["content-type"] = "application/x-python-serialize"
    envelope["content-encoding"] = "binary"
    envelope["body"] = base64.b64encode(pickle.dumps(((), {"x": 1}, {}))).decode()
    return envelope


def _with_record(cluster: Cluster, envelope: dict[str, Any], effects: Path) -> str:
    """Write a real job record (queued in alpha) whose message is `envelope` instead;
    nothing is pushed."""
    rt = cluster.runtime
    job = prepare(
        cluster.app, rt.config, rt.registry, EnqueueRequest("faults.effect", {"path": str(effects)})
    )
    envelope["headers"]["id"] = envelope["properties"]["correlation_id"] = job.record.id
    pipe = cluster.client.pipeline()
    store.plan_enqueue(pipe, job.record, BuiltMessage(QUEUE, "placeholder"), result_ttl_s=600)
    pipe.lrem(QUEUE, 1, "placeholder")
    pipe.execute()
    return job.record.id


def _dead_ids(cluster: Cluster) -> set[str]:
    return {m.decode() for m in cluster.client.zrange(keys.dead_letters(QUEUE), 0, -1)}


def _error(cluster: Cluster, job_id: str) -> dict[str, str]:
    error: dict[str, str] = json.loads(cluster.record(job_id)["error"])
    return error


def _push_all(cluster: Cluster, entries: list[str], worker: Proc | None) -> None:
    """Push `entries`: all at once before a worker starts (its first poll is a BRPOP,
    every later one the take script), or one by one to a running, idle `worker` (each is
    BRPOPed), each once the one before left a dead letter."""
    if worker is None:
        cluster.client.lpush(QUEUE, *entries)
        return
    for entry in entries:
        before = len(_dead_ids(cluster))
        time.sleep(0.3)  # the take script's poll after the last delivery found nothing
        cluster.client.lpush(QUEUE, entry)
        wait_until(lambda b=before: len(_dead_ids(cluster)) > b, timeout_s=20)


def _assert_drained(cluster: Cluster) -> None:
    for name in keys.queue_lists(QUEUE, cluster.runtime.config.broker.priority_steps):
        assert cluster.client.llen(name) == 0
    assert cluster.client.hlen(keys.KOMBU_UNACKED) == 0, "left in unacked"
    assert cluster.client.zcard(keys.KOMBU_UNACKED_INDEX) == 0
    assert cluster.client.zcard(keys.running(QUEUE)) == 0, "left in the running set"
    assert cluster.client.zcard(keys.pending(QUEUE)) == 0


@pytest.mark.parametrize("taken_by", ["take script", "brpop"])
def test_unreadable_messages_become_dead_letters_and_their_records_dead(
    cluster: Cluster, tmp_path: Path, taken_by: str
) -> None:
    effects = tmp_path / "effects.txt"
    effect = {"path": str(effects)}
    worker = cluster.worker(QUEUE) if taken_by == "brpop" else None
    if worker is None:
        # Taken first by BRPOP, so that every entry after it is taken by the script.
        first_good = cluster.enqueue("faults.effect", effect)

    def forged() -> dict[str, Any]:
        return _envelope(cluster, "faults.effect", effect)

    with_record = {
        "body not base64": _body_not_base64(forged()),
        "body not JSON": _body_not_json(forged()),
    }
    named = {name: _with_record(cluster, env, effects) for name, env in with_record.items()}
    recordless = {
        "body not base64": _body_not_base64(forged()),
        "body not JSON": _body_not_json(forged()),
    }
    entries = [json.dumps(e) for e in (*with_record.values(), *recordless.values())]
    entries.append("garbage{\x1b[31m")
    cluster.client.config_resetstat()
    _push_all(cluster, entries, worker)
    if worker is None:
        worker = cluster.worker(QUEUE)
    good = cluster.enqueue("faults.effect", effect)

    ids = [*named.values(), *(e["headers"]["id"] for e in recordless.values())]
    cluster.wait_all_terminal([good, *ids], timeout_s=30)
    wait_until(lambda: len(_dead_ids(cluster)) >= len(ids) + 1, timeout_s=20)
    # Long enough for anything left in `unacked` to be put back and taken again.
    time.sleep(VISIBILITY_TIMEOUT_S + 2)

    assert worker.popen.poll() is None
    stats = cluster.client.info("commandstats")
    if taken_by == "brpop":
        assert stats["cmdstat_brpop"]["calls"] >= len(entries)
    else:  # the take script took every entry (EVALSHA), the first good job was BRPOPed
        assert stats["cmdstat_evalsha"]["calls"] >= len(entries) + 1
    assert cluster.states(ids) == dict.fromkeys(ids, "dead")
    assert cluster.states([good]) == {good: "succeeded"}
    ran = [good] if taken_by == "brpop" else [first_good, good]
    assert effect_counts(effects) == dict.fromkeys(ran, 1), "only the good jobs ran"
    _assert_drained(cluster)
    for job_id in named.values():
        record = cluster.record(job_id)
        assert (record["attempts"], record.get("started_at"), record.get("worker")) == (
            "0",
            None,
            None,
        ), "never started"
    for kind, job_id in [*named.items(), *((k, e["headers"]["id"]) for k, e in recordless.items())]:
        error = _error(cluster, job_id)
        assert error["type"] == "MessageRefused"
        assert f"queue 'alpha', task 'faults.effect', message id '{job_id}'" in error["message"]
        if kind == "body not base64":
            assert error["message"].startswith(
                "the queue entry is not a valid message: 'body' is not valid base64 "
            )
            # the entry, escaped (the control character shows as \x01)
            assert "first bytes b'{" in error["message"]
        else:
            assert error["message"].startswith("the worker could not decode the message body")
            assert "first bytes b'not json{\\x00\\xff'" in error["message"], error
    # The entry that is not JSON at all: a dead letter of its own, under a new id.
    (garbage,) = _dead_ids(cluster) - set(ids)
    record = cluster.record(garbage)
    assert record["state"] == "dead" and record["queue"] == QUEUE
    assert _error(cluster, garbage) == {
        "type": "MessageRefused",
        "message": "the queue entry is not JSON (queue 'alpha', task none, message id none, "
        "first bytes b'garbage{\\x1b[31m')",
    }
    assert len(_dead_ids(cluster)) == len(ids) + 1, "each refused once, not redelivered"


def test_pickle_and_unknown_tasks_without_a_record_become_dead_letters(
    cluster: Cluster, tmp_path: Path
) -> None:
    effects = tmp_path / "effects.txt"
    effect = {"path": str(effects)}
    worker = cluster.worker(QUEUE)
    pickle_message = _pickled(_envelope(cluster, "faults.effect", effect))
    unknown = _envelope(cluster, "evil.task", effect)
    no_id = _envelope(cluster, "evil.task", effect)
    del no_id["headers"]["id"]
    del no_id["properties"]["correlation_id"]
    cluster.client.lpush(QUEUE, *(json.dumps(e) for e in (pickle_message, unknown, no_id)))
    good = cluster.enqueue("faults.effect", effect)

    pickle_id, unknown_id = pickle_message["headers"]["id"], unknown["headers"]["id"]
    cluster.wait_all_terminal([good, pickle_id, unknown_id], timeout_s=30)
    wait_until(lambda: len(_dead_ids(cluster)) >= 3, timeout_s=20)
    time.sleep(VISIBILITY_TIMEOUT_S + 2)

    assert worker.popen.poll() is None
    assert cluster.states([good, pickle_id, unknown_id]) == {
        good: "succeeded",
        pickle_id: "dead",
        unknown_id: "dead",
    }
    assert effect_counts(effects) == {good: 1}
    _assert_drained(cluster)
    error = _error(cluster, pickle_id)
    assert error["type"] == "MessageRefused"
    assert error["message"].startswith(
        "the worker refused the message: Refusing to deserialize untrusted content of type "
        "pickle (application/x-python-serialize)"
    )
    assert f"(queue 'alpha', task 'faults.effect', message id '{pickle_id}', " in error["message"]
    assert "first bytes b'\\x80\\x04\\x95" in error["message"], "the pickle, escaped"
    error = _error(cluster, unknown_id)
    assert error["type"] == "UnknownTask"
    assert error["message"].startswith(
        "the worker does not know task 'evil.task'; retry the dead letter once workers that "
        f"register it run (queue 'alpha', task 'evil.task', message id '{unknown_id}', "
        'first bytes b\'[[],{"path":'
    )
    (without_id,) = _dead_ids(cluster) - {pickle_id, unknown_id}
    assert cluster.record(without_id)["task"] == "evil.task"
    assert "task 'evil.task', message id none, " in _error(cluster, without_id)["message"]
    assert len(_dead_ids(cluster)) == 3


def test_celery_built_in_tasks_never_run(cluster: Cluster, tmp_path: Path) -> None:
    effects = tmp_path / "effects.txt"
    effect = {"path": str(effects)}
    builtins = sorted(name for name in cluster.app.tasks if name.startswith("celery."))
    assert "celery.backend_cleanup" in builtins and "celery.chord_unlock" in builtins
    worker = cluster.worker(QUEUE)
    forged = [_envelope(cluster, name, {}) for name in builtins]
    # `celery.group` would publish the signatures it is given: a job with no record.
    group = next(e for e in forged if e["headers"]["task"] == "celery.group")
    group_body = [[], {"tasks": [], "result": None, "group_id": "g", "partial_args": []}, {}]
    group_body[1]["tasks"] = [
        {"task": "faults.effect", "args": [], "kwargs": effect, "options": {}, "subtask_type": None}
    ]
    group["body"] = base64.b64encode(json.dumps(group_body).encode()).decode()
    cluster.client.lpush(QUEUE, *(json.dumps(e) for e in forged))
    good = cluster.enqueue("faults.effect", effect)

    ids = [e["headers"]["id"] for e in forged]
    cluster.wait_all_terminal([good, *ids], timeout_s=30)
    time.sleep(2)

    assert worker.popen.poll() is None
    # Run, each would have got a record from the worker (started, then succeeded or
    # failed); refused, each is a dead letter that never started.
    assert cluster.states(ids) == dict.fromkeys(ids, "dead")
    assert effect_counts(effects) == {good: 1}, "nothing ran but the good job"
    _assert_drained(cluster)
    for envelope in forged:
        job_id, name = envelope["headers"]["id"], envelope["headers"]["task"]
        record = cluster.record(job_id)
        assert (record["task"], record["attempts"], record.get("started_at")) == (name, "0", None)
        assert _error(cluster, job_id)["message"].startswith(
            f"task '{name}' is not a jobyard job: the worker runs only registered jobs "
            f"(queue 'alpha', task '{name}', message id '{job_id}', first bytes b'"
        )
    assert _dead_ids(cluster) == set(ids)
    log = worker.log()
    assert "refused a message of queue alpha" in log
    assert "celery.backend_cleanup" in log
