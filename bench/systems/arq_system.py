"""arq with its defaults (asyncio, max_jobs 10, results kept 1 h); it has no multi-process
worker, so multi runs two worker processes."""

from __future__ import annotations

import asyncio
from typing import Any, ClassVar

from bench.systems.base import MULTI, BenchEnv, Producer, System

FILL_CONCURRENCY = 8


class Arq(System):
    name: ClassVar[str] = "arq"
    description: ClassVar[str] = "arq worker (defaults); multi: two worker processes"
    poll_commands: ClassVar[int] = 1

    def __init__(self, env: BenchEnv) -> None:
        super().__init__(env)
        from arq import create_pool
        from arq.connections import RedisSettings

        self.loop = asyncio.new_event_loop()
        self.pool: Any = self.loop.run_until_complete(
            create_pool(RedisSettings.from_dsn(env.redis.url))
        )

    def worker_commands(self, mode: str) -> list[list[str]]:
        cmd = [self.env.script("arq"), "bench.apps.arq_worker.WorkerSettings"]
        return [cmd, cmd] if mode == MULTI else [cmd]

    def fill(self, n: int) -> None:
        async def fill() -> None:
            done = 0
            while done < n:
                size = min(FILL_CONCURRENCY, n - done)
                await asyncio.gather(*(self.pool.enqueue_job("noop") for _ in range(size)))
                done += size

        self.loop.run_until_complete(fill())

    def pending(self) -> int:
        from arq.constants import default_queue_name

        # arq keeps a job in its queue's sorted set until the job has finished.
        return int(self.loop.run_until_complete(self.pool.zcard(default_queue_name)))

    def producer(self) -> Producer:
        def enqueue(t0: float) -> None:
            self.loop.run_until_complete(self.pool.enqueue_job("stamp", t0))

        return enqueue

    def close(self) -> None:
        self.loop.run_until_complete(self.pool.aclose())
        self.loop.close()
