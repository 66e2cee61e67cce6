"""Scenario 4: a queue scaled to zero while messages sat unacknowledged.

kombu puts expired `unacked` messages back only from a running consumer; with no worker
left, the leading beat does it, so nothing waits in `unacked` for a worker that may never
come back, and the jobs run when one does.
"""

from __future__ import annotations

import signal
import time
from pathlib import Path

import pytest

from jobyard.core import keys
from tests.e2e.cluster import VISIBILITY_TIMEOUT_S, Cluster
from tests.e2e.ledger import Report, Row, account, duplicates, effect_counts
from tests.support.processes import wait_until

pytestmark = [pytest.mark.integration, pytest.mark.faults]


def test_unacked_messages_of_a_queue_with_no_worker_go_back_and_run_later(
    cluster: Cluster, tmp_path: Path, report: Report
) -> None:
    effects = tmp_path / "effects.txt"
    once = tmp_path / "effects-once.txt"
    beat = cluster.beat()
    worker = cluster.worker("alpha")
    running = [
        cluster.enqueue("faults.effect", {"path": str(effects), "sleep_s": 1.5}),
        cluster.enqueue("faults.effect_once", {"path": str(once), "sleep_s": 1.5}),
    ]
    wait_until(
        lambda: effects.exists() and once.exists() and len(cluster.message_ids()["unacked"]) == 2,
        timeout_s=30,
    )
    waiting = cluster.enqueue_many([("faults.effect_once", {"path": str(once)}, {})] * 3)
    jobs = running + waiting
    delivered_at = min(
        score
        for _, score in cluster.client.zrange(keys.KOMBU_UNACKED_INDEX, 0, -1, withscores=True)
    )

    # Scaled to zero the hard way: the last worker's pod is gone (node lost, OOM-killed).
    worker.kill_group(signal.SIGKILL)
    worker.popen.wait(timeout=10)
    t_gone = time.monotonic()
    assert sorted(cluster.message_ids()["unacked"]) == sorted(running)

    def all_back() -> bool:
        where = cluster.message_ids()
        return where["unacked"] == [] and sorted(where["list"]) == sorted(jobs)

    wait_until(all_back, timeout_s=VISIBILITY_TIMEOUT_S + 15, interval_s=0.05)
    restored_at = time.time()
    restored_s = time.monotonic() - t_gone
    assert restored_at >= delivered_at + VISIBILITY_TIMEOUT_S, "restored before it expired"
    assert "restored 2 unacked message(s)" in beat.log()
    # Still no worker: the jobs wait in their list (visible to KEDA), not in `unacked`.
    time.sleep(2)
    assert all_back()
    assert cluster.client.zcard(keys.KOMBU_UNACKED_INDEX) == 0

    t_back = time.monotonic()
    cluster.worker("alpha")  # KEDA scales the queue back up
    cluster.wait_all_terminal(jobs, timeout_s=60)
    ran_s = time.monotonic() - t_back
    acct = account(cluster, jobs)
    counts, once_counts = effect_counts(effects), effect_counts(once)
    assert acct.lost == [] and acct.pending == []
    assert acct.succeeded == 5
    assert counts == {running[0]: 2}  # its effect ran before the kill and again after
    assert once_counts == dict.fromkeys([running[1], *waiting], 1)
    report.add(
        Row.of(
            "4 scaled to zero with unacked messages",
            acct,
            duplicate_executions=duplicates(counts) + duplicates(once_counts),
            effect_duplicates=duplicates(once_counts),
            recovery_s=restored_s,
            notes=f"no worker: beat put the 2 unacked messages back {restored_s:.1f} s after "
            f"the kill (visibility timeout {VISIBILITY_TIMEOUT_S:g} s); all 5 ran "
            f"{ran_s:.1f} s after a worker returned",
        )
    )
