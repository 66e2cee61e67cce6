"""Scenario 10: a chaos run. Thousands of jobs across three queues while a driver SIGKILLs
worker process groups, SIGTERMs workers and SIGKILLs single prefork children every few
seconds, restarting a worker each time. At the end every job is accounted for.

Half the jobs are `faults.effect` (at-least-once: a run killed after its effect and
redelivered repeats it, counted as a duplicate execution), half `faults.effect_once`
(idempotent: its effect must happen exactly once). A beat runs throughout: it puts back
messages left in `unacked` by killed workers once the visibility timeout has passed.
"""

from __future__ import annotations

import contextlib
import json
import os
import random
import signal
import subprocess
import threading
import time
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from tests.e2e.cluster import QUEUES, Cluster, e2e_config
from tests.e2e.ledger import Report, Row, account, duplicates, effect_counts
from tests.support.processes import Proc

pytestmark = [pytest.mark.integration, pytest.mark.faults]

SEED = 20_250_105
JOBS = 2000
BATCH = 50
PRODUCE_S = 40.0
"""Jobs are enqueued in batches spread over this long, while the chaos runs."""
CHAOS_S = 60.0
FAULT_EVERY_S = (2.0, 4.0)
WORKERS = {"alpha": 2, "beta": 1, "gamma": 1}
DRAIN_TIMEOUT_S = 180.0
VISIBILITY_TIMEOUT_S = 8.0
CHAOS_CONFIG = e2e_config(soft_time_limit_s=5, time_limit_s=6, visibility_timeout_s=8)
"""Jobs of at most 0.5 s get 5 s before their soft limit: on a loaded 2-core machine a
run that is slow (not killed) must not fail as timed out and blur the accounting."""


@pytest.fixture
def chaos_cluster(tmp_path: Path) -> Iterator[Cluster]:
    c = Cluster(tmp_path, config_text=CHAOS_CONFIG)
    try:
        yield c
    finally:
        c.close()


@dataclass
class Chaos:
    """The fault driver: one fault every few seconds, then a replacement worker."""

    cluster: Cluster
    rng: random.Random
    workers: dict[str, list[Proc]] = field(default_factory=dict)
    faults: Counter[str] = field(default_factory=Counter)
    stop: threading.Event = field(default_factory=threading.Event)
    error: list[BaseException] = field(default_factory=list)

    def start_worker(self, queue: str) -> None:
        self.workers.setdefault(queue, []).append(self.cluster.worker(queue, wait=False))

    def run(self) -> None:
        try:
            while not self.stop.wait(self.rng.uniform(*FAULT_EVERY_S)):
                self.strike()
        except BaseException as exc:  # surfaced by the test
            self.error.append(exc)

    def strike(self) -> None:
        live = [
            (q, p) for q, procs in self.workers.items() for p in procs if p.popen.poll() is None
        ]
        if not live:
            return
        queue, proc = self.rng.choice(live)
        fault = self.rng.choice(["sigkill-group", "sigterm", "sigkill-child"])
        if fault == "sigkill-child":
            children = _children(proc.pid)
            if not children:
                fault = "sigkill-group"
            else:
                with contextlib.suppress(ProcessLookupError):
                    os.kill(self.rng.choice(children), signal.SIGKILL)
                self.faults[fault] += 1
                return  # the worker forks a new child itself
        if fault == "sigkill-group":
            proc.kill_group(signal.SIGKILL)
        else:
            proc.send_signal(signal.SIGTERM)
        self.faults[fault] += 1
        self.start_worker(queue)

    def reap(self) -> None:
        """Forget workers that have exited (SIGTERMed ones finish their shutdown)."""
        for procs in self.workers.values():
            procs[:] = [p for p in procs if p.popen.poll() is None]


def _children(pid: int) -> list[int]:
    out = subprocess.run(["pgrep", "-P", str(pid)], capture_output=True, text=True, check=False)
    return [int(x) for x in out.stdout.split()]


def _produce(cluster: Cluster, rng: random.Random, plain: Path, once: Path, ids: list[str]) -> None:
    batches = JOBS // BATCH
    start = time.monotonic()
    for b in range(batches):
        jobs: list[tuple[str, dict[str, Any], dict[str, Any]]] = []
        for i in range(BATCH):
            idempotent = (b * BATCH + i) % 2 == 1
            args = {
                "path": str(once if idempotent else plain),
                "sleep_s": rng.choice([0, 0.05, 0.2, 0.5]),
            }
            request = {"queue": rng.choice(QUEUES), "priority": rng.randrange(10)}
            jobs.append(("faults.effect_once" if idempotent else "faults.effect", args, request))
        ids.extend(cluster.enqueue_many(jobs))
        time.sleep(max(0.0, start + (b + 1) * PRODUCE_S / batches - time.monotonic()))


@pytest.mark.timeout(480)
def test_chaos_run_loses_nothing_and_idempotent_effects_happen_once(
    chaos_cluster: Cluster, tmp_path: Path, report: Report
) -> None:
    cluster = chaos_cluster
    rng = random.Random(SEED)
    plain, once = tmp_path / "effects.txt", tmp_path / "effects-once.txt"
    cluster.beat()
    chaos = Chaos(cluster, random.Random(SEED + 1))
    for queue, n in WORKERS.items():
        for _ in range(n):
            chaos.start_worker(queue)
    for procs in chaos.workers.values():
        for proc in procs:
            proc.wait_for_log(" ready.", timeout_s=90)

    ids: list[str] = []
    driver = threading.Thread(target=chaos.run, name="chaos", daemon=True)
    t0 = time.monotonic()
    driver.start()
    _produce(cluster, rng, plain, once, ids)
    time.sleep(max(0.0, CHAOS_S - (time.monotonic() - t0)))
    chaos.stop.set()
    driver.join(timeout=30)
    assert not chaos.error, chaos.error
    t_calm = time.monotonic()

    # Calm: whatever is left of the fleet keeps running; make sure each queue has a worker.
    chaos.reap()
    for queue in QUEUES:
        if not chaos.workers.get(queue):
            chaos.start_worker(queue)
    cluster.wait_all_terminal(ids, timeout_s=DRAIN_TIMEOUT_S)
    drain_s = time.monotonic() - t_calm

    acct = account(cluster, ids)
    plain_counts, once_counts = effect_counts(plain), effect_counts(once)
    states = cluster.states(ids)
    (tmp_path / "chaos-accounting.json").write_text(
        json.dumps(
            {
                "faults": dict(chaos.faults),
                "by_state": dict(acct.by_state),
                "lost": acct.lost,
                "pending": acct.pending,
                "plain_duplicates": {k: n for k, n in plain_counts.items() if n > 1},
                "once_duplicates": {k: n for k, n in once_counts.items() if n > 1},
            },
            indent=2,
        )
    )
    assert len(ids) == JOBS
    assert acct.lost == [], f"{len(acct.lost)} job(s) lost: {acct.lost[:10]}"
    assert acct.pending == [], f"{len(acct.pending)} job(s) not drained: {acct.pending[:10]}"
    # A job ends dead only by the poison policy: killed with its worker on every one of
    # its 5 starts. Every other job succeeded.
    for job_id, state in states.items():
        if state == "dead":
            assert json.loads(cluster.record(job_id)["error"])["type"] == "JobCrashedError"
    assert acct.succeeded + acct.dead == JOBS
    assert duplicates(once_counts) == 0
    succeeded = {j for j, s in states.items() if s == "succeeded"}
    assert all(plain_counts[j] + once_counts[j] >= 1 for j in succeeded), "effect missing"
    assert sum(chaos.faults.values()) >= CHAOS_S / FAULT_EVERY_S[1] - 2
    faults = ", ".join(f"{k} {v}" for k, v in sorted(chaos.faults.items()))
    report.add(
        Row.of(
            f"10 chaos: {JOBS} jobs, 3 queues, {sum(chaos.faults.values())} faults",
            acct,
            duplicate_executions=duplicates(plain_counts) + duplicates(once_counts),
            effect_duplicates=duplicates(once_counts),
            recovery_s=drain_s,
            notes=f"{CHAOS_S:g} s of chaos ({faults}); "
            f"recovery = drain time after the chaos stopped (visibility timeout "
            f"{VISIBILITY_TIMEOUT_S:g} s)",
        )
    )
