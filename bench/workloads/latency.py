"""Latency: a producer enqueues stamp jobs at a fixed rate while a worker (both cores)
runs them; each job writes `start - t0`, where `t0` is the producer's clock just before
its enqueue call (same machine, same clock).

Phases run back to back on one worker: each is produced open-loop (the schedule does
not wait for the workers), then drained before the next starts.
"""

from __future__ import annotations

import shutil
import time
from dataclasses import dataclass
from typing import Any

from bench.apps.stamp import read_all
from bench.redis_server import BenchRedis
from bench.stats import latency_summary_ms
from bench.systems import MULTI, System

DRAIN_TIMEOUT_S = 90.0


@dataclass(frozen=True)
class Phase:
    name: str
    rate_per_s: float
    duration_s: float


def produce(enqueue: Any, rate_per_s: float, duration_s: float) -> tuple[float, float, float]:
    """Enqueue at `rate_per_s` for `duration_s`; returns (first t0, last t0, achieved rate)."""
    n = max(1, int(rate_per_s * duration_s))
    start = time.perf_counter()
    first = last = 0.0
    for i in range(n):
        delay = start + i / rate_per_s - time.perf_counter()
        if delay > 0:
            time.sleep(delay)
        last = time.time()
        if i == 0:
            first = last
        enqueue(last)
    return first, last, n / max(time.perf_counter() - start, 1e-9)


def run_latency(
    system: System, redis: BenchRedis, *, phases: list[Phase], tag: str
) -> dict[str, dict[str, Any]]:
    """One measurement of every phase: {phase name: summary}."""
    redis.reset()
    stamp_dir = system.env.workdir / "stamps" / f"{system.name}-{tag}"
    shutil.rmtree(stamp_dir, ignore_errors=True)
    stamp_dir.mkdir(parents=True)
    group = system.start_worker(MULTI, f"latency-{system.name}-{tag}", stamp_dir=stamp_dir)
    windows: list[tuple[Phase, float, float, float]] = []
    try:
        system.warm_up(group)
        enqueue = system.producer()
        for phase in phases:
            first, last, achieved = produce(enqueue, phase.rate_per_s, phase.duration_s)
            windows.append((phase, first, last, achieved))
            system.wait_drained(group, DRAIN_TIMEOUT_S)
    finally:
        group.stop()
    stamps = read_all(stamp_dir)
    out: dict[str, dict[str, Any]] = {}
    for phase, first, last, achieved in windows:
        samples = [lat for t0, lat in stamps if first <= t0 <= last]
        sent = max(1, int(phase.rate_per_s * phase.duration_s))
        summary: dict[str, Any] = latency_summary_ms(samples) if samples else {"samples": 0}
        summary.update(rate_per_s=phase.rate_per_s, achieved_rate_per_s=achieved, sent=sent)
        out[phase.name] = summary
    return out
