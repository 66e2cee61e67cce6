"""Messages lost in transit: a worker killed after BRPOP took a message from Redis and
before kombu recorded it in `unacked` takes the only copy with it. Without a remedy the
job's record says `queued` forever (seen here before the fix: 9 jobs lost in 60 SIGKILLs
of a worker pulling a stream of short jobs). The leading beat republishes such jobs from
their records (`jobyard.beat.orphans`).

The first test makes the loss happen for real, SIGKILLing a worker again and again while
it takes jobs; the second makes it exactly, popping messages the way a dying worker does,
including a chain's first member, whose message carries the rest of the chain.
"""

from __future__ import annotations

import json
import random
import re
import signal
import time
from pathlib import Path

import pytest

from tests.e2e.cluster import ApiProc, Cluster
from tests.e2e.ledger import Report, Row, account, duplicates, effect_counts
from tests.support.processes import wait_until

pytestmark = [pytest.mark.integration, pytest.mark.faults]

ROUNDS = 12
JOBS_PER_ROUND = 120


def _republished(beat_log: str) -> list[str]:
    return re.findall(r"job (\S+) lost its message in transit", beat_log)


def test_sigkill_while_a_worker_takes_messages_loses_no_job(
    cluster: Cluster, tmp_path: Path, report: Report
) -> None:
    effects = tmp_path / "effects.txt"
    rng = random.Random(11)
    beat = cluster.beat()
    ids: list[str] = []
    for _ in range(ROUNDS):
        ids += cluster.enqueue_many(
            [("faults.effect", {"path": str(effects)}, {})] * JOBS_PER_ROUND
        )
        worker = cluster.worker("alpha")
        time.sleep(rng.uniform(0.3, 1.2))  # it is taking one message after another
        worker.kill_group(signal.SIGKILL)
        worker.popen.wait(timeout=10)
    t_calm = time.monotonic()
    cluster.worker("alpha")
    cluster.worker("alpha")
    cluster.wait_all_terminal(ids, timeout_s=120)
    drain_s = time.monotonic() - t_calm

    acct = account(cluster, ids)
    counts = effect_counts(effects)
    republished = _republished(beat.log())
    assert acct.lost == [], f"{len(acct.lost)} job(s) lost: {acct.lost[:5]}"
    assert acct.pending == []
    assert acct.succeeded == len(ids)
    assert set(counts) == set(ids)
    # A republished job had really lost its message: it ran once, not twice.
    assert all(counts[job_id] == 1 for job_id in republished)
    assert len(set(republished)) == len(republished)
    report.add(
        Row.of(
            f"2b SIGKILL x{ROUNDS} while a worker takes messages",
            acct,
            duplicate_executions=duplicates(counts),
            effect_duplicates=None,
            recovery_s=drain_s,
            notes=f"{len(republished)} job(s) whose message died with the worker (taken by "
            "BRPOP, not yet in unacked) republished by beat; none lost",
        )
    )


def _pop_message_of(cluster: Cluster, job_id: str, queue: str = "alpha") -> dict[str, object]:
    """Take a job's message out of its list, as a worker killed right after BRPOP did."""
    for raw in cluster.client.lrange(queue, 0, -1):
        envelope: dict[str, object] = json.loads(raw)
        if envelope["headers"]["id"] == job_id:  # type: ignore[index]
            assert cluster.client.lrem(queue, 1, raw) == 1
            return envelope
    raise AssertionError(f"no message of {job_id} in {queue}")


def test_beat_republishes_exactly_the_jobs_whose_message_vanished(
    cluster: Cluster, tmp_path: Path, report: Report
) -> None:
    effects = tmp_path / "effects.txt"
    api: ApiProc = cluster.api()
    lost = cluster.enqueue("faults.effect", {"path": str(effects)})
    kept = cluster.enqueue("faults.effect", {"path": str(effects)})
    r = api.http.post(
        "/v1/workflows",
        json={
            "type": "chain",
            "jobs": [{"task": "faults.effect", "args": {"path": str(effects)}}] * 3,
        },
    )
    assert r.status_code == 201, r.text
    chain_ids = [job["id"] for job in r.json()["jobs"]]
    original = _pop_message_of(cluster, chain_ids[0])
    _pop_message_of(cluster, lost)
    assert cluster.message_ids()["list"] == [kept]

    beat = cluster.beat()
    wait_until(lambda: len(_republished(beat.log())) == 2, timeout_s=30)
    time.sleep(3)  # more checks: nothing else is republished
    assert sorted(_republished(beat.log())) == sorted([lost, chain_ids[0]])
    assert sorted(cluster.message_ids()["list"]) == sorted([lost, kept, chain_ids[0]])
    for job_id in (lost, chain_ids[0]):
        record = cluster.record(job_id)
        assert record["state"] == "queued"
        assert json.loads(record["error"])["type"] == "MessageLost"
    # The chain's first member comes back with the rest of its chain.
    republished = next(
        json.loads(raw)
        for raw in cluster.client.lrange("alpha", 0, -1)
        if json.loads(raw)["headers"]["id"] == chain_ids[0]
    )
    assert republished["headers"]["root_id"] == original["headers"]["root_id"] == chain_ids[0]

    cluster.worker("alpha")
    jobs = [lost, kept, *chain_ids]
    cluster.wait_all_terminal(jobs, timeout_s=60)
    acct = account(cluster, jobs)
    assert acct.succeeded == 5 and acct.lost == []
    assert effect_counts(effects) == dict.fromkeys(jobs, 1)
    started = [float(cluster.record(j)["started_at"]) for j in chain_ids]
    assert started == sorted(started), "the chain ran in order"
    assert api.http.get(f"/v1/workflows/{r.json()['id']}").json()["state"] == "succeeded"
    report.add(
        Row.of(
            "messages popped and lost (exact)",
            acct,
            duplicate_executions=duplicates(effect_counts(effects)),
            effect_duplicates=None,
            recovery_s=None,
            notes="a job and a chain's first member lost their messages: beat republished "
            "exactly those two (the chain with its continuation); each job ran once, in order",
        )
    )
