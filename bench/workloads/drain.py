"""Drain: enqueue N no-op jobs while the worker is paused, then time how long it takes to
run them all.

The worker is started and warmed up first (a few jobs run, so imports and forks are
done), then paused with SIGSTOP for the fill, so only the drain is measured: wall time,
CPU time of the worker's process tree, Redis commands (`INFO commandstats` delta, minus
the harness's own polls) and peak RSS of the tree.
"""

from __future__ import annotations

import time
from typing import Any

from bench.procs import PeakRss
from bench.redis_server import BenchRedis, command_delta
from bench.systems import BenchError, System

POLL_INTERVAL_S = 0.02


def run_drain(
    system: System, redis: BenchRedis, *, mode: str, n: int, max_drain_s: float, tag: str
) -> dict[str, Any]:
    """One measurement. `max_drain_s` caps the drain: a slower system is measured over the
    jobs it finished by then (`capped: true`)."""
    redis.reset()
    group = system.start_worker(mode, f"drain-{system.name}-{mode}-{tag}")
    try:
        system.warm_up(group)
        group.pause()
        system.fill(n)
        before = redis.command_calls()
        cpu_before = group.cpu_s()
        polls = 0
        zeros = 0
        capped = False
        with PeakRss(group) as rss:
            start = time.perf_counter()
            group.resume()
            while True:
                time.sleep(POLL_INTERVAL_S)
                polls += 1
                left = system.pending()
                zeros = zeros + 1 if left == 0 else 0
                if zeros == 2:
                    break
                if not group.alive():
                    raise BenchError(f"{system.name}: worker exited:\n{group.log()[-3000:]}")
                if time.perf_counter() - start > max_drain_s:
                    capped = True
                    break
            elapsed_s = time.perf_counter() - start
            group.pause()
        cpu_s = group.cpu_s() - cpu_before
        after = redis.command_calls()
        done = n - left if capped else n
    finally:
        group.stop()
    if done <= 0:
        raise BenchError(f"{system.name}: no job finished in {max_drain_s:g} s")
    commands = command_delta(before, after)
    own = polls * system.poll_commands
    total_commands = sum(commands.values()) - own
    return {
        "jobs": done,
        "elapsed_s": elapsed_s,
        "jobs_per_s": done / elapsed_s,
        "cpu_us_per_job": cpu_s / done * 1e6,
        "redis_commands_per_job": total_commands / done,
        "redis_commands": commands,
        "harness_poll_commands": own,
        "peak_rss_mib": rss.peak_bytes / 2**20,
        "peak_pss_mib": rss.peak_pss_bytes / 2**20,
        "capped": capped,
    }
