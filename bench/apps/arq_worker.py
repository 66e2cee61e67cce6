"""The benchmark's arq worker (`arq bench.apps.arq_worker.WorkerSettings`), arq defaults."""

from __future__ import annotations

import os
from typing import Any

from arq.connections import RedisSettings

from bench.apps import stamp as stamps


async def noop(ctx: dict[str, Any]) -> None:
    """Do nothing."""


async def stamp(ctx: dict[str, Any], t0: float) -> None:
    """Record the enqueue-to-start time."""
    stamps.record(t0)


def redis_settings() -> RedisSettings:
    return RedisSettings.from_dsn(os.environ.get("BENCH_REDIS_URL", "redis://127.0.0.1:6379/0"))


class WorkerSettings:
    functions = [noop, stamp]
    redis_settings = redis_settings()
