"""How much of each workload a run does: the `full`, `quick` and `smoke` profiles."""

from __future__ import annotations

from dataclasses import dataclass, replace

from bench.systems import MULTI, SOLO


@dataclass(frozen=True)
class Plan:
    profile: str
    reps: int
    """Repetitions of every measurement, systems interleaved (A B A B)."""
    drain_jobs: int
    drain_modes: tuple[str, ...]
    drain_max_s: float
    """A jobyard or bare Celery drain longer than this is cut and measured over the jobs
    finished so far."""
    peer_drain_max_s: float
    """The same cut for the other systems (they are several times slower: a full drain of
    N jobs would take most of the run's time budget)."""
    latency_skip: tuple[str, ...]
    """Systems left out of the latency workload."""
    latency_rate_per_s: float
    latency_duration_s: float
    saturation_fraction: float
    """The near-saturation phase runs at this fraction of the system's drain rate (multi)."""
    saturation_duration_s: float
    saturation_default_rate_per_s: float
    """Used when the drain workload did not run for the system."""
    http_clients: int
    http_duration_s: float
    scale_jobs: int
    scale_samples: int


FULL = Plan(
    profile="full",
    reps=3,
    drain_jobs=20_000,
    drain_modes=(SOLO, MULTI),
    drain_max_s=90,
    peer_drain_max_s=6,
    # The forking RQ worker runs about 40 jobs/s here: a 200/s producer only grows its
    # backlog (its drain numbers say as much).
    latency_skip=("rq-fork",),
    latency_rate_per_s=200,
    latency_duration_s=20,
    saturation_fraction=0.8,
    saturation_duration_s=4,
    saturation_default_rate_per_s=400,
    http_clients=16,
    http_duration_s=3,
    scale_jobs=1_000_000,
    scale_samples=25,
)
QUICK = replace(
    FULL,
    profile="quick",
    reps=1,
    drain_jobs=3000,
    drain_max_s=15,
    peer_drain_max_s=5,
    latency_duration_s=5,
    saturation_duration_s=3,
    http_duration_s=2,
    scale_jobs=100_000,
    scale_samples=10,
)
SMOKE = replace(
    FULL,
    profile="smoke",
    reps=1,
    drain_jobs=30,
    drain_modes=(SOLO,),
    drain_max_s=10,
    peer_drain_max_s=10,
    latency_skip=(),
    latency_rate_per_s=50,
    latency_duration_s=0.4,
    saturation_duration_s=0.2,
    saturation_default_rate_per_s=100,
    http_clients=4,
    http_duration_s=0.3,
    scale_jobs=2000,
    scale_samples=3,
)
PROFILES = {p.profile: p for p in (FULL, QUICK, SMOKE)}
