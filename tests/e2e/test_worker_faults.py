"""Scenarios 1-3, 8 and 9: workers stopped, killed and crashed while jobs run.

Every scenario enqueues through the real store, runs real `jobyard worker` processes,
injects the fault, then accounts for every job (none lost) and counts executions from the
effect files the jobs write outside Redis.
"""

from __future__ import annotations

import os
import signal
import time
from pathlib import Path

import pytest

from jobyard.core import keys
from tests.e2e.cluster import (
    LONG_GRACE_S,
    SHORT_GRACE_S,
    TIME_LIMIT_S,
    VISIBILITY_TIMEOUT_S,
    Cluster,
)
from tests.e2e.ledger import Report, Row, account, duplicates, effect_counts
from tests.support.processes import wait_until

pytestmark = [pytest.mark.integration, pytest.mark.faults]


def _started(cluster: Cluster, job_ids: list[str]) -> bool:
    return all(s == "started" for s in cluster.states(job_ids).values())


def _lines(path: Path) -> list[str]:
    return path.read_text().splitlines() if path.exists() else []


def test_sigterm_lets_running_jobs_finish_within_the_grace(
    cluster: Cluster, tmp_path: Path, report: Report
) -> None:
    """Scenario 1a: SIGTERM (KEDA scale-down) with a grace longer than the running jobs."""
    effects = tmp_path / "effects.txt"
    worker = cluster.worker("alpha")
    running = cluster.enqueue_many(
        [("faults.effect", {"path": str(effects), "sleep_s": 1.5}, {})] * 2
    )
    wait_until(lambda: _started(cluster, running), timeout_s=30)
    waiting = cluster.enqueue_many([("faults.effect", {"path": str(effects)}, {})] * 6)

    t_term = time.monotonic()
    worker.send_signal(signal.SIGTERM)
    code = worker.popen.wait(timeout=LONG_GRACE_S + 10)
    stopped_s = time.monotonic() - t_term

    # The running jobs finished, once each; the waiting ones were never taken.
    assert cluster.states(running) == dict.fromkeys(running, "succeeded")
    assert cluster.states(waiting) == dict.fromkeys(waiting, "queued")
    assert cluster.client.hlen(keys.KOMBU_UNACKED) == 0
    assert sorted(cluster.message_ids()["list"]) == sorted(waiting)
    # It stopped once its jobs were done, not at the end of the grace.
    assert stopped_s < LONG_GRACE_S - 2, f"the worker waited {stopped_s:.1f} s for 1.5 s jobs"
    assert f"SIGTERM: no new jobs; waiting up to {LONG_GRACE_S:g} s for 2 running job(s)" in (
        worker.log()
    )

    cluster.worker("alpha")
    cluster.wait_all_terminal(running + waiting, timeout_s=60)
    acct = account(cluster, running + waiting)
    counts = effect_counts(effects)
    assert acct.lost == [] and acct.pending == []
    assert acct.succeeded == 8
    assert sorted(counts) == sorted(running + waiting)
    assert duplicates(counts) == 0
    assert [cluster.record(j)["attempts"] for j in running + waiting] == ["1"] * 8
    report.add(
        Row.of(
            "1a SIGTERM, grace > job",
            acct,
            duplicate_executions=0,
            effect_duplicates=None,
            recovery_s=stopped_s,
            notes=f"worker exited {stopped_s:.1f} s after SIGTERM (code {code}); "
            f"2 running jobs finished, 6 waiting ran on the next worker",
        )
    )


def test_sigterm_requeues_jobs_still_running_after_the_grace(
    cluster: Cluster, tmp_path: Path, report: Report
) -> None:
    """Scenario 1b: SIGTERM with a grace shorter than the running jobs: they go back to the
    queue at once (not after the visibility timeout) and run again on the next worker."""
    effects = tmp_path / "effects.txt"
    once = tmp_path / "effects-once.txt"
    worker = cluster.worker("beta")
    plain = cluster.enqueue("faults.effect", {"path": str(effects), "sleep_s": 1.5}, queue="beta")
    idem = cluster.enqueue("faults.effect_once", {"path": str(once), "sleep_s": 1.5}, queue="beta")
    wait_until(lambda: _started(cluster, [plain, idem]) and len(_lines(once)) == 1, timeout_s=30)
    wait_until(lambda: len(_lines(effects)) == 1, timeout_s=5)
    waiting = cluster.enqueue_many(
        [("faults.effect", {"path": str(effects)}, {"queue": "beta"})] * 4
    )
    jobs = [plain, idem, *waiting]

    t_term = time.monotonic()
    worker.send_signal(signal.SIGTERM)
    worker.popen.wait(timeout=SHORT_GRACE_S + 15)
    stopped_s = time.monotonic() - t_term
    requeued_s = time.monotonic() - t_term
    # Requeued at once: every message is back in the list, nothing waits in `unacked`.
    assert cluster.client.hlen(keys.KOMBU_UNACKED) == 0
    assert sorted(cluster.message_ids()["list"]) == sorted(jobs)
    assert stopped_s < SHORT_GRACE_S + 5, f"worker took {stopped_s:.1f} s to stop"
    for job_id in (plain, idem):
        record = cluster.record(job_id)
        assert (record["state"], record["attempts"]) == ("queued", "0")
        assert record["error"] == (
            '{"type":"WorkerShutdown","message":"its worker shut down before the job '
            f'finished (grace {SHORT_GRACE_S:g} s); requeued to run again"}}'
        )

    cluster.worker("beta")
    cluster.wait_all_terminal(jobs, timeout_s=60)
    acct = account(cluster, jobs)
    counts, once_counts = effect_counts(effects), effect_counts(once)
    assert acct.lost == [] and acct.pending == []
    assert acct.succeeded == 6
    # At-least-once: the plain job's effect ran before the SIGTERM and again after.
    assert counts[plain] == 2
    assert all(counts[j] == 1 for j in waiting)
    assert once_counts == {idem: 1}
    # A start cut short by a shutdown is not a failed attempt.
    assert [cluster.record(j)["attempts"] for j in jobs] == ["1"] * 6
    assert cluster.record(idem)["result"] == "false"  # the rerun found its effect done
    report.add(
        Row.of(
            "1b SIGTERM, grace < job",
            acct,
            duplicate_executions=duplicates(counts) + duplicates(once_counts),
            effect_duplicates=duplicates(once_counts),
            recovery_s=requeued_s,
            notes="2 running jobs requeued at shutdown (not after the visibility timeout) "
            "and rerun; the plain job's effect twice (at-least-once), the idempotent one once",
        )
    )


def test_sigkill_of_the_worker_group_redelivers_after_the_visibility_timeout(
    cluster: Cluster, tmp_path: Path, report: Report
) -> None:
    """Scenario 2: SIGKILL of the whole worker (main process and children) mid-job."""
    effects = tmp_path / "effects.txt"
    once = tmp_path / "effects-once.txt"
    cluster.beat()
    worker = cluster.worker("alpha")
    plain = cluster.enqueue("faults.effect", {"path": str(effects), "sleep_s": 1.5})
    idem = cluster.enqueue("faults.effect_once", {"path": str(once), "sleep_s": 1.5})
    wait_until(lambda: len(_lines(effects)) == 1 and len(_lines(once)) == 1, timeout_s=30)
    waiting = cluster.enqueue_many([("faults.effect", {"path": str(effects)}, {})] * 3)
    jobs = [plain, idem, *waiting]

    worker.kill_group(signal.SIGKILL)
    worker.popen.wait(timeout=10)
    t_kill = time.monotonic()
    assert sorted(cluster.message_ids()["unacked"]) == sorted([plain, idem])
    assert cluster.states([plain, idem]) == {plain: "started", idem: "started"}
    cluster.worker("alpha")  # the replacement pod

    cluster.wait_all_terminal(jobs, timeout_s=60)
    recovery_s = time.monotonic() - t_kill
    acct = account(cluster, jobs)
    counts, once_counts = effect_counts(effects), effect_counts(once)
    assert acct.lost == [] and acct.pending == []
    assert acct.succeeded == 5
    assert counts[plain] == 2
    assert once_counts == {idem: 1}
    assert all(counts[j] == 1 for j in waiting)
    for job_id in (plain, idem):
        record = cluster.record(job_id)
        assert record["attempts"] == "2"
        # Redelivered only once the visibility timeout had passed since delivery.
        assert float(record["started_at"]) - float(record["enqueued_at"]) >= VISIBILITY_TIMEOUT_S
    assert VISIBILITY_TIMEOUT_S - 2 <= recovery_s < VISIBILITY_TIMEOUT_S + 15
    report.add(
        Row.of(
            "2 SIGKILL worker group",
            acct,
            duplicate_executions=duplicates(counts) + duplicates(once_counts),
            effect_duplicates=duplicates(once_counts),
            recovery_s=recovery_s,
            notes=f"2 running jobs redelivered after the {VISIBILITY_TIMEOUT_S:g} s visibility "
            "timeout; plain effect twice, idempotent effect once",
        )
    )


def test_sigkill_of_one_prefork_child_requeues_its_job(
    cluster: Cluster, tmp_path: Path, report: Report
) -> None:
    """Scenario 3: the OOM killer takes one prefork child: its job is requeued at once."""
    effects = tmp_path / "effects.txt"
    once = tmp_path / "effects-once.txt"
    pid_plain, pid_idem = tmp_path / "plain.pid", tmp_path / "idem.pid"
    worker = cluster.worker("alpha")
    plain = cluster.enqueue(
        "faults.effect", {"path": str(effects), "sleep_s": 1.5, "pid_path": str(pid_plain)}
    )
    idem = cluster.enqueue(
        "faults.effect_once", {"path": str(once), "sleep_s": 1.5, "pid_path": str(pid_idem)}
    )
    wait_until(lambda: len(_lines(effects)) == 1 and len(_lines(once)) == 1, timeout_s=30)
    children = {int(pid_plain.read_text()), int(pid_idem.read_text())}
    assert worker.pid not in children
    t_kill = time.monotonic()
    for pid in children:
        os.kill(pid, signal.SIGKILL)

    cluster.wait_all_terminal([plain, idem], timeout_s=30)
    recovery_s = time.monotonic() - t_kill
    acct = account(cluster, [plain, idem])
    counts, once_counts = effect_counts(effects), effect_counts(once)
    assert acct.lost == [] and acct.pending == []
    assert acct.succeeded == 2
    assert counts == {plain: 2}
    assert once_counts == {idem: 1}
    assert [cluster.record(j)["attempts"] for j in (plain, idem)] == ["2", "2"]
    # Requeued at once by the worker, not left for the visibility timeout.
    assert recovery_s < VISIBILITY_TIMEOUT_S
    assert worker.popen.poll() is None, "the worker itself survives"
    assert cluster.client.hlen(keys.KOMBU_UNACKED) == 0
    report.add(
        Row.of(
            "3 SIGKILL one prefork child",
            acct,
            duplicate_executions=duplicates(counts) + duplicates(once_counts),
            effect_duplicates=duplicates(once_counts),
            recovery_s=recovery_s,
            notes="both jobs requeued by the worker at once and rerun on a new child",
        )
    )


def test_job_past_its_hard_time_limit_is_killed_failed_and_not_redelivered(
    cluster: Cluster, tmp_path: Path, report: Report
) -> None:
    """Scenario 8: a job that ignores its soft limit is killed at the hard limit, once."""
    starts = tmp_path / "hog-starts.txt"
    effects = tmp_path / "effects.txt"
    cluster.beat()  # restores anything left in `unacked`, so a loop would show
    cluster.worker("alpha")
    hog = cluster.enqueue("faults.hog", {"path": str(starts), "seconds": 30})
    t0 = time.monotonic()
    cluster.wait_all_terminal([hog], timeout_s=30)
    killed_s = time.monotonic() - t0
    after = cluster.enqueue("faults.effect", {"path": str(effects)})
    cluster.wait_all_terminal([after], timeout_s=30)
    # Long enough for a redelivery (visibility timeout + restore) to have happened.
    time.sleep(VISIBILITY_TIMEOUT_S + 2)

    acct = account(cluster, [hog, after])
    record = cluster.record(hog)
    assert acct.lost == [] and acct.pending == []
    assert (record["state"], acct.by_state["succeeded"]) == ("failed", 1)
    assert record["error"] == (
        '{"type":"TimeLimitExceeded","message":"job exceeded its hard time limit of '
        f'{TIME_LIMIT_S} s and was killed"}}'
    )
    assert record["attempts"] == "1"
    assert _lines(starts) == [hog], "ran once: not redelivered after the kill"
    assert TIME_LIMIT_S - 0.5 < killed_s < TIME_LIMIT_S + 5
    assert cluster.client.hlen(keys.KOMBU_UNACKED) == 0
    assert cluster.message_ids()["list"] == []
    report.add(
        Row.of(
            "8 job past its hard time limit",
            acct,
            duplicate_executions=duplicates(effect_counts(starts)),
            effect_duplicates=None,
            recovery_s=killed_s,
            notes=f"killed at the {TIME_LIMIT_S:g} s hard limit, failed (TimeLimitExceeded), "
            "1 start; the next job ran",
        )
    )


@pytest.mark.parametrize("how", ["sigkill", "exit"])
def test_poison_message_ends_in_dead_letters_after_its_attempts(
    cluster: Cluster, tmp_path: Path, report: Report, how: str
) -> None:
    """Scenario 9: a job that kills its own process every time ends dead after 3 starts."""
    starts = tmp_path / "crash-starts.txt"
    effects = tmp_path / "effects.txt"
    worker = cluster.worker("alpha")
    poison = cluster.enqueue("faults.crash", {"path": str(starts), "how": how})
    t0 = time.monotonic()
    cluster.wait_all_terminal([poison], timeout_s=60)
    dead_s = time.monotonic() - t0
    after = cluster.enqueue("faults.effect", {"path": str(effects)})
    cluster.wait_all_terminal([after], timeout_s=30)

    acct = account(cluster, [poison, after])
    record = cluster.record(poison)
    assert acct.lost == [] and acct.pending == []
    assert record["state"] == "dead"
    assert _lines(starts) == [poison] * 3, "the job function ran exactly max_attempts times"
    assert record["attempts"] == "4"
    assert record["error"] == (
        '{"type":"JobCrashedError","message":"job started 4 times but allows 3 attempt(s); '
        'earlier runs were lost with their worker process (killed or crashed)"}'
    )
    assert cluster.client.zrange(keys.dead_letters("alpha"), 0, -1) == [poison.encode()]
    assert cluster.states([after]) == {after: "succeeded"}
    assert worker.popen.poll() is None
    assert cluster.client.hlen(keys.KOMBU_UNACKED) == 0
    assert cluster.message_ids()["list"] == []
    report.add(
        Row.of(
            f"9 poison message ({how})",
            acct,
            duplicate_executions=0,
            effect_duplicates=None,
            recovery_s=dead_s,
            notes="3 starts (max_attempts 3), the 4th delivery dead-lettered without running",
        )
    )
