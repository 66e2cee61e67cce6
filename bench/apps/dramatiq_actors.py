"""The benchmark's dramatiq actors on its Redis broker (default middleware)."""

from __future__ import annotations

import os

import dramatiq
from dramatiq.brokers.redis import RedisBroker

from bench.apps import stamp as stamps

QUEUE = "bench"

broker = RedisBroker(url=os.environ.get("BENCH_REDIS_URL", "redis://127.0.0.1:6379/0"))
dramatiq.set_broker(broker)


@dramatiq.actor(queue_name=QUEUE)
def noop() -> None:
    """Do nothing."""


@dramatiq.actor(queue_name=QUEUE)
def stamp(t0: float) -> None:
    """Record the enqueue-to-start time."""
    stamps.record(t0)
