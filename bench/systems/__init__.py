"""One adapter module per system; `SYSTEMS` maps their names to their classes."""

from __future__ import annotations

from bench.systems.arq_system import Arq
from bench.systems.base import MULTI, SOLO, BenchEnv, BenchError, System
from bench.systems.celery_system import BareCelery
from bench.systems.dramatiq_system import Dramatiq
from bench.systems.jobyard_system import Jobyard
from bench.systems.rq_system import RqFork, RqSimple

SYSTEMS: dict[str, type[System]] = {
    cls.name: cls for cls in (Jobyard, BareCelery, RqSimple, RqFork, Arq, Dramatiq)
}
"""Systems of the worker workloads (drain, latency), in report order."""
BASELINE = BareCelery.name

__all__ = ["BASELINE", "MULTI", "SOLO", "SYSTEMS", "BenchEnv", "BenchError", "System"]
