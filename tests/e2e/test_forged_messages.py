"""Hostile queue entries: pickle, forged and malformed messages pushed straight into a
queue list are refused by the worker and never executed (never even unpickled); they are
not redelivered and do not block the queue; each becomes a dead letter (the job record it
names, or a new one) that says why; and the worker keeps consuming good jobs.
`test_refused_messages.py` covers each kind of refusal in detail.

Also the honest version of a forged message: a job enqueued by an API that knows a task
the workers do not (a rolling deploy) ends dead with the reason, and runs when retried
after the workers know it.
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
from tests.e2e.ledger import Report, Row, account, effect_counts
from tests.support.processes import wait_until

pytestmark = [pytest.mark.integration, pytest.mark.faults]


class _Unpickled:
    """Creates a file when unpickled: proof that a worker deserialized pickle."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self) -> tuple[Any, tuple[str, str]]:
        return (open, (str(self.marker), "w"))


def _envelope(cluster: Cluster, task: str, kwargs: dict[str, Any], job_id: str) -> dict[str, Any]:
    message = build_message(
        cluster.app,
        task_id=job_id,
        task_name=task,
        kwargs=kwargs,
        queue="alpha",
        priority=0,
        priority_steps=cluster.runtime.config.broker.priority_steps,
    )
    envelope: dict[str, Any] = json.loads(message.payload)
    return envelope


def _pickled(envelope: dict[str, Any], payload: Any) -> dict[str, Any]:
    envelope["content-type"] = "application/x-python-serialize"
    envelope["content-encoding"] = "binary"
    envelope["body"] = base64.b64encode(pickle.dumps(payload)).decode()
    return envelope


def _with_record(cluster: Cluster, envelope: dict[str, Any], effects: Path) -> str:
    """Write a real job record (queued in alpha) whose message is `envelope` instead."""
    rt = cluster.runtime
    job = prepare(
        cluster.app, rt.config, rt.registry, EnqueueRequest("faults.effect", {"path": str(effects)})
    )
    envelope["headers"]["id"] = envelope["properties"]["correlation_id"] = job.record.id
    pipe = cluster.client.pipeline()
    store.plan_enqueue(
        pipe, job.record, BuiltMessage("alpha", json.dumps(envelope)), result_ttl_s=600
    )
    pipe.execute()
    return job.record.id


def test_pickle_forged_and_malformed_messages_are_refused_and_never_run(
    cluster: Cluster, tmp_path: Path, report: Report
) -> None:
    effects = tmp_path / "effects.txt"
    marker = tmp_path / "unpickled"
    cluster.beat()  # would put back anything left in `unacked`
    worker = cluster.worker("alpha")
    effect = {"path": str(effects)}

    def forged(task: str = "faults.effect", kwargs: dict[str, Any] | None = None) -> Any:
        return _envelope(cluster, task, effect if kwargs is None else kwargs, str(uuid.uuid4()))

    pickle_payload = ((), {**effect, "x": _Unpickled(marker)}, {})
    no_headers = forged()
    no_headers["headers"] = {}
    not_json_body = forged()
    not_json_body["body"] = base64.b64encode(b"not json{").decode()
    with_records = {
        "pickle": _with_record(cluster, _pickled(forged(), pickle_payload), effects),
        "no headers": _with_record(cluster, no_headers, effects),
        "body not JSON": _with_record(cluster, not_json_body, effects),
    }
    bad_args = forged(kwargs={"path": 5, "evil": True})
    unknown = forged(task="evil.task")
    entries: list[str] = [
        json.dumps(_pickled(forged(), pickle_payload)),
        json.dumps(unknown),
        json.dumps(bad_args),
        "garbage{",
        "[1, 2]",
        json.dumps({"properties": 5}),
        json.dumps({**forged(), "body": "%%% not base64"}),
    ]
    for entry in entries:
        cluster.client.lpush("alpha", entry)
    urgent_pickle = json.dumps(_pickled(forged(), pickle_payload))
    cluster.client.lpush(keys.queue_list("alpha", 9), urgent_pickle)
    good = cluster.enqueue_many([("faults.effect", effect, {})] * 5)

    cluster.wait_all_terminal([*good, *with_records.values()], timeout_s=60)
    wait_until(lambda: cluster.states([bad_args["headers"]["id"]]) != {}, timeout_s=30)
    # Long enough for anything left in `unacked` to be put back and delivered again.
    time.sleep(VISIBILITY_TIMEOUT_S + 2)

    assert worker.popen.poll() is None, "the worker survived every entry"
    assert not marker.exists(), "a pickle payload was deserialized"
    assert effect_counts(effects) == dict.fromkeys(good, 1), "only the good jobs ran"
    assert cluster.states(good) == dict.fromkeys(good, "succeeded")
    where = cluster.message_ids()
    assert where == {"list": [], "unacked": [], "scheduled": []}, "nothing redelivered"
    for steps in keys.queue_lists("alpha", cluster.runtime.config.broker.priority_steps):
        assert cluster.client.llen(steps) == 0
    reasons = {
        name: json.loads(cluster.record(job_id)["error"]) for name, job_id in with_records.items()
    }
    assert cluster.states(list(with_records.values())) == dict.fromkeys(
        with_records.values(), "dead"
    )
    assert reasons["pickle"]["type"] == "MessageRefused"
    assert reasons["pickle"]["message"].startswith(
        "the worker refused the message: Refusing to deserialize untrusted content of type "
        "pickle (application/x-python-serialize)"
    )
    assert reasons["no headers"]["type"] == "MessageRefused"
    assert reasons["no headers"]["message"].startswith(
        "the message has no task headers (not a Celery task message) (queue 'alpha', task "
        f"none, message id '{with_records['no headers']}', first bytes b'"
    )
    assert reasons["body not JSON"]["message"].startswith(
        "the worker could not decode the message body (application/json): "
    )
    # Every refused entry is a dead letter: those with records, and one per other entry
    # (the pickles and the unknown task under their message ids).
    dead = {m.decode() for m in cluster.client.zrange(keys.dead_letters("alpha"), 0, -1)}
    refused = [e for e in entries if e != json.dumps(bad_args)] + [urgent_pickle]
    assert len(dead) == len(with_records) + len(refused)
    pickles = {json.loads(e)["headers"]["id"] for e in (entries[0], urgent_pickle)}
    assert {*with_records.values(), *pickles, unknown["headers"]["id"]} <= dead
    assert cluster.states(list(dead)) == dict.fromkeys(dead, "dead")
    for record in (cluster.record(j) for j in with_records.values()):
        assert (record["attempts"], record.get("started_at")) == ("0", None), "never started"
    # A forged message with a registered task and bad arguments runs no job code.
    bad = cluster.record(bad_args["headers"]["id"])
    assert bad["state"] == "failed"
    assert json.loads(bad["error"])["type"] == "JobArgumentsError"
    assert json.loads(cluster.record(unknown["headers"]["id"])["error"])["type"] == "UnknownTask"
    log = worker.log()
    assert "the queue entry is not JSON (queue 'alpha', task none, message id none, " in log
    assert "first bytes b'garbage{')" in log
    assert "the queue entry is not a valid message: not a JSON object but list" in log
    assert "no 'properties' object" in log and "'body' is not valid base64" in log

    jobs = [*good, *with_records.values(), bad_args["headers"]["id"]]
    acct = account(cluster, jobs)
    assert acct.lost == [] and acct.pending == []
    report.add(
        Row.of(
            "hostile queue entries",
            acct,
            duplicate_executions=0,
            effect_duplicates=None,
            recovery_s=None,
            notes=f"{len(entries) + 1 + len(with_records)} forged/pickle/malformed entries: none "
            "ran or was unpickled; each refused one a dead letter with the reason; the worker "
            "survived and ran 5 good jobs",
        )
    )


def test_a_task_the_workers_do_not_know_yet_ends_dead_and_runs_when_retried(
    cluster: Cluster, tmp_path: Path, report: Report
) -> None:
    effects = tmp_path / "effects.txt"
    api = cluster.api()
    # A worker of the previous release: it does not load the module registering faults.*.
    old = cluster.worker("alpha", env={"JOBYARD_JOB_MODULES": ""})
    r = api.http.post("/v1/jobs", json={"task": "faults.effect", "args": {"path": str(effects)}})
    assert r.status_code == 201, r.text
    job_id = r.json()["id"]
    cluster.wait_all_terminal([job_id], timeout_s=30)
    record = cluster.record(job_id)
    assert record["state"] == "dead"
    error = json.loads(record["error"])
    assert error["type"] == "UnknownTask"
    assert error["message"].startswith(
        "the worker does not know task 'faults.effect'; retry the dead letter once "
        f"workers that register it run (queue 'alpha', task 'faults.effect', message id "
        f"'{job_id}', first bytes b'[[],{{\"path\":"
    )
    listed = api.http.get("/v1/dead-letters", params={"queue": "alpha"}).json()["dead_letters"]
    assert [d["id"] for d in listed] == [job_id]
    assert not effects.exists()

    old.stop()
    cluster.worker("alpha")  # the new release
    retried = api.http.post("/v1/dead-letters:retry", params={"queue": "alpha"})
    assert retried.json() == {"retried": 1, "skipped": 0}
    cluster.wait_all_terminal([job_id], timeout_s=30)
    acct = account(cluster, [job_id])
    assert acct.succeeded == 1 and acct.lost == []
    assert effect_counts(effects) == {job_id: 1}
    report.add(
        Row.of(
            "task unknown to the workers (rolling deploy)",
            acct,
            duplicate_executions=0,
            effect_duplicates=None,
            recovery_s=None,
            notes="refused by the old worker: dead with reason UnknownTask (not dropped); "
            "retried from dead letters, ran once on the new worker",
        )
    )
