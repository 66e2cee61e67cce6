"""Scenario 7: two beats at once for a minute of fast schedules, with the leader SIGKILLed
halfway and a replacement started (two beats race again until the end).

Documented policy (`jobyard.beat.main`): every run is sent at most once, however many
beats run; runs that fall due while nobody leads (at most `lease_ttl_s + tick_s` after the
dead leader's last renewal) merge into one catch-up run. No worker consumes during the
minute, so every run can be read back from its queue list; workers then run them all.
"""

from __future__ import annotations

import math
import signal
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from jobyard.core import keys
from tests.e2e.cluster import E2E_CONFIG, LEASE_TTL_S, TICK_S, Cluster
from tests.e2e.ledger import Report, Row, account, duplicates, effect_counts
from tests.integration.test_beat import (
    assert_sent_once_on_time,
    beat_id,
    lease,
    missing_on_grid,
    runs,
)
from tests.support.processes import wait_until

pytestmark = [pytest.mark.integration, pytest.mark.faults]

RACE_S = 60.0
KILL_AT_S = 30.0
SCHEDULES = {"every-second": ("alpha", 1.0), "every-two": ("gamma", 2.0)}


@pytest.fixture
def scheduled(tmp_path: Path) -> Iterator[Cluster]:
    once = tmp_path / "effects-once.txt"
    config = (
        E2E_CONFIG
        + "schedules:\n"
        + "".join(
            f"  - name: {name}\n    task: faults.effect_once\n    interval_s: {interval_s:g}\n"
            f"    queue: {queue}\n    args: {{path: {str(once)!r}}}\n"
            for name, (queue, interval_s) in SCHEDULES.items()
        )
    )
    cluster = Cluster(tmp_path, config_text=config)
    try:
        yield cluster
    finally:
        cluster.close()


def test_two_beats_for_a_minute_send_each_run_once_through_a_leader_kill(
    scheduled: Cluster, tmp_path: Path, report: Report
) -> None:
    cluster = scheduled
    client = cluster.client
    first, second = cluster.beat(), cluster.beat()
    t0 = time.monotonic()
    beats = {beat_id(first): first, beat_id(second): second}
    leader_id = wait_until(lambda: lease(client), timeout_s=10)
    standby_id = next(i for i in beats if i != leader_id)

    time.sleep(max(0.0, KILL_AT_S - (time.monotonic() - t0)))
    beats[leader_id].kill_group(signal.SIGKILL)
    t_kill = time.time()
    last_tick = float(client.get(keys.BEAT_LAST_TICK) or 0)
    wait_until(lambda: lease(client) == standby_id, timeout_s=LEASE_TTL_S + 10, interval_s=0.01)
    t_taken = time.time()
    replacement = cluster.beat()  # the killed pod's replacement: two beats race again
    replacement_id = beat_id(replacement)

    time.sleep(max(0.0, RACE_S - (time.monotonic() - t0)))
    for proc in (beats[standby_id], replacement):
        assert proc.stop() == 0
    takeover_s = t_taken - t_kill
    leaderless_s = t_taken - last_tick

    found = {name: runs(client, queue, name) for name, (queue, _) in SCHEDULES.items()}
    lost_runs = {}
    for name, (_, interval_s) in SCHEDULES.items():
        assert_sent_once_on_time(found[name], interval_s)
        dues = [r.due_at for r in found[name]]
        missing = missing_on_grid(dues, interval_s)
        # Only runs due while nobody led are merged away, and no more than the bound.
        assert all(last_tick - interval_s < m < t_taken for m in missing), (missing, last_tick)
        # At most one grid point per interval of the leaderless window (one of them is sent
        # as the catch-up run); that window is bounded below.
        assert len(missing) <= math.ceil(leaderless_s / interval_s), (missing, leaderless_s)
        lost_runs[name] = len(missing)
        expected = (dues[-1] - dues[0]) / interval_s + 1 - len(missing)
        assert len(found[name]) == round(expected)
        assert len(found[name]) >= RACE_S / interval_s - 6
    assert takeover_s < LEASE_TTL_S + 2, f"standby took {takeover_s:.2f} s"
    assert leaderless_s < LEASE_TTL_S + TICK_S + 1
    assert replacement_id != leader_id
    # One job record per run, and nothing else was enqueued.
    job_ids = [r.job_id for name in SCHEDULES for r in found[name]]
    assert sum(client.zcard(keys.recent(q)) for q, _ in SCHEDULES.values()) == len(job_ids)

    for queue, _ in SCHEDULES.values():
        cluster.worker(queue)
    cluster.wait_all_terminal(job_ids, timeout_s=120)
    acct = account(cluster, job_ids)
    once = effect_counts(tmp_path / "effects-once.txt")
    assert acct.lost == [] and acct.pending == []
    assert acct.succeeded == len(job_ids)
    assert sorted(once) == sorted(job_ids)
    assert duplicates(once) == 0
    report.add(
        Row.of(
            "7 two beats for 60 s, leader SIGKILLed",
            acct,
            duplicate_executions=duplicates(once),
            effect_duplicates=duplicates(once),
            recovery_s=takeover_s,
            notes=f"runs sent: {', '.join(f'{n} {len(found[n])}' for n in SCHEDULES)}; "
            "no run sent twice; merged into the catch-up run while nobody led: "
            f"{', '.join(f'{n} {lost_runs[n]}' for n in SCHEDULES)} "
            f"(leaderless {leaderless_s:.1f} s, lease {LEASE_TTL_S:g} s)",
        )
    )
