"""Scenarios 5 and 6: Redis restarted (clean, and kill -9 with AOF `everysec`) and Redis
paused (SIGSTOP) past the worker heartbeat, with the API, workers and beat running."""

from __future__ import annotations

import re
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.e2e.cluster import VISIBILITY_TIMEOUT_S, ApiProc, Cluster
from tests.e2e.ledger import Report, Row, account, duplicates, effect_counts
from tests.support.processes import jobyard_env, wait_until

pytestmark = [pytest.mark.integration, pytest.mark.faults]

PROBLEM = "application/problem+json"


@pytest.fixture
def durable(tmp_path: Path) -> Iterator[Cluster]:
    """A cluster whose Redis writes an append-only file (fsync every second)."""
    c = Cluster(tmp_path, appendonly=True)
    try:
        yield c
    finally:
        c.close()


def _post(api: ApiProc, body: dict[str, Any]) -> httpx.Response:
    return api.http.post("/v1/jobs", json=body)


def _enqueue(api: ApiProc, body: dict[str, Any]) -> str:
    r = _post(api, body)
    assert r.status_code == 201, r.text
    return str(r.json()["id"])


@pytest.mark.parametrize("how", ["clean", "kill-9"])
def test_redis_restart_keeps_queued_jobs_and_everything_reconnects(
    durable: Cluster, tmp_path: Path, report: Report, how: str
) -> None:
    """Scenario 5: queued jobs survive; the API answers 503 problems while Redis is down and
    recovers without a restart; workers and beat reconnect and carry on."""
    cluster = durable
    server = cluster.server
    assert server is not None
    effects = tmp_path / "effects.txt"
    once = tmp_path / "effects-once.txt"
    api = cluster.api()
    cluster.beat()
    cluster.worker("alpha")
    before = [
        _enqueue(api, {"task": "faults.effect", "args": {"path": str(effects)}}) for _ in range(5)
    ]
    cluster.wait_all_terminal(before, timeout_s=30)
    # Queued (no gamma worker yet) and running (alpha) when Redis goes away.
    queued = [
        _enqueue(api, {"task": "faults.effect", "args": {"path": str(effects)}, "queue": "gamma"})
        for _ in range(10)
    ]
    running = _enqueue(
        api, {"task": "faults.effect_once", "args": {"path": str(once), "sleep_s": 1.9}}
    )
    wait_until(lambda: cluster.states([running])[running] == "started", timeout_s=30)
    # Past AOF everysec: every write so far (the start included) is on disk, and the job
    # still runs for ~0.8 s after Redis is gone.
    time.sleep(1.1)

    t_down = time.monotonic()
    server.stop(signal.SIGTERM if how == "clean" else signal.SIGKILL)
    down = _post(api, {"task": "faults.effect", "args": {"path": str(effects)}})
    assert down.status_code == 503, down.text
    assert down.headers["content-type"] == PROBLEM
    assert down.json()["title"] == "Redis unreachable"
    ready = api.http.get("/readyz")
    assert (ready.status_code, ready.headers["content-type"]) == (503, PROBLEM)
    assert api.http.get("/healthz").json() == {"status": "ok"}
    time.sleep(2)
    server.start()  # same port, same append-only file
    t_up = time.monotonic()

    probes: list[str] = []

    def api_ok() -> bool:
        r = _post(api, {"task": "faults.effect", "args": {"path": str(effects)}})
        if r.status_code == 201:
            probes.append(r.json()["id"])
        return r.status_code == 201

    wait_until(api_ok, timeout_s=30, interval_s=0.2)
    api_recovered_s = time.monotonic() - t_up
    assert api.proc.popen.poll() is None, "the API recovered without a restart"
    after = [
        _enqueue(api, {"task": "faults.effect", "args": {"path": str(effects)}}) for _ in range(5)
    ]
    cluster.wait_all_terminal(after, timeout_s=60)
    worker_recovered_s = time.monotonic() - t_up
    assert cluster.states(after) == dict.fromkeys(after, "succeeded"), "the worker reconnected"
    # The queued jobs survived the restart; a gamma worker now runs them.
    assert sorted(cluster.message_ids()["list"]) == sorted(queued)
    cluster.worker("gamma")
    jobs = [*before, *queued, running, *probes, *after]
    cluster.wait_all_terminal(jobs, timeout_s=VISIBILITY_TIMEOUT_S + 60)
    drained_s = time.monotonic() - t_up

    acct = account(cluster, jobs)
    counts, once_counts = effect_counts(effects), effect_counts(once)
    assert acct.lost == [] and acct.pending == []
    assert acct.succeeded == len(jobs)
    assert all(counts[j] == 1 for j in [*before, *queued, *probes, *after])
    assert once_counts == {running: 1}
    report.add(
        Row.of(
            f"5 Redis restart ({how})",
            acct,
            duplicate_executions=duplicates(counts) + duplicates(once_counts),
            effect_duplicates=duplicates(once_counts),
            recovery_s=worker_recovered_s,
            notes=f"down {t_up - t_down:.1f} s; API 503 problem+json while down, 201 again "
            f"{api_recovered_s:.1f} s after Redis returned (no restart); a new job ran "
            f"{worker_recovered_s:.1f} s after; all drained in {drained_s:.1f} s",
        )
    )


def _check(cluster: Cluster, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    """`jobyard worker --queue alpha --check`, the liveness probe."""
    full_env = jobyard_env(
        cluster.url_for("worker"),
        cluster.config_path,
        JOBYARD_JOB_MODULES="tests.support.fault_jobs",
        JOBYARD_HEARTBEAT_DIR=str(cluster.heartbeat_dir),
        **env,
    )
    return subprocess.run(
        [sys.executable, "-m", "jobyard.cli", "worker", "--queue", "alpha", "--check"],
        env=full_env,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def test_redis_paused_past_the_heartbeat_fails_liveness_then_the_worker_recovers(
    cluster: Cluster, tmp_path: Path, report: Report
) -> None:
    """Scenario 6: SIGSTOP Redis longer than the heartbeat's max age."""
    server = cluster.server
    assert server is not None and server.proc is not None
    effects = tmp_path / "effects.txt"
    env = {"JOBYARD_HEARTBEAT_INTERVAL_S": "0.5", "JOBYARD_HEARTBEAT_MAX_AGE_S": "2"}
    beat = cluster.beat()
    worker = cluster.worker("alpha", env=env)
    wait_until(lambda: _check(cluster, env).returncode == 0, timeout_s=30, interval_s=0.2)
    running = cluster.enqueue("faults.effect", {"path": str(effects), "sleep_s": 1.5})
    wait_until(lambda: effects.exists(), timeout_s=30)

    t_stop = time.monotonic()
    server.proc.send_signal(signal.SIGSTOP)
    try:
        failed = wait_until(
            lambda: (r := _check(cluster, env)).returncode == 1 and r, timeout_s=30, interval_s=0.2
        )
        failed_s = time.monotonic() - t_stop
        while time.monotonic() - t_stop < 8:  # paused well past the 2 s limit
            time.sleep(0.2)
    finally:
        server.proc.send_signal(signal.SIGCONT)
    t_cont = time.monotonic()
    assert "heartbeat is" in failed.stderr and "(limit 2 s)" in failed.stderr, failed.stderr

    wait_until(lambda: _check(cluster, env).returncode == 0, timeout_s=30, interval_s=0.2)
    alive_s = time.monotonic() - t_cont
    after = cluster.enqueue("faults.effect", {"path": str(effects)})
    jobs = [running, after]
    cluster.wait_all_terminal(jobs, timeout_s=VISIBILITY_TIMEOUT_S + 30)
    recovered_s = time.monotonic() - t_cont
    assert worker.popen.poll() is None, "the same worker recovered: no restart needed"

    acct = account(cluster, jobs)
    counts = effect_counts(effects)
    assert acct.lost == [] and acct.pending == []
    assert acct.succeeded == 2
    assert counts[after] == 1
    # The job that ended during the pause could not record its success (Redis did not
    # answer before its soft time limit). Either Redis applied the write once it resumed,
    # or the record still said `started` with the message acknowledged, and beat ran the
    # job again (at-least-once) to finish it.
    rerun = re.findall(r"job (\S+) lost its message in transit", beat.log())
    assert counts[running] == 1 + len(rerun) and rerun in ([], [running])
    report.add(
        Row.of(
            "6 Redis paused (SIGSTOP 8 s)",
            acct,
            duplicate_executions=duplicates(counts),
            effect_duplicates=None,
            recovery_s=recovered_s,
            notes=f"liveness check failed {failed_s:.1f} s into the pause (max age 2 s); "
            f"passed again {alive_s:.1f} s after SIGCONT; the same worker ran a new job "
            "(no restart); the job that ended mid-pause "
            + (
                "lost its success write and was run again by beat"
                if rerun
                else "recorded its success after the pause"
            ),
        )
    )
