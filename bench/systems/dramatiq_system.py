"""dramatiq on its Redis broker, default middleware, one thread per process."""

from __future__ import annotations

from typing import Any, ClassVar

import redis

from bench.systems.base import MULTI, BenchEnv, Producer, System


class Dramatiq(System):
    name: ClassVar[str] = "dramatiq"
    description: ClassVar[str] = "dramatiq, Redis broker; solo: -p 1 -t 1; multi: -p 2 -t 1"
    poll_commands: ClassVar[int] = 1

    def __init__(self, env: BenchEnv) -> None:
        super().__init__(env)
        self.client = redis.Redis.from_url(env.redis.url)

    @property
    def actors(self) -> Any:
        from bench.apps import dramatiq_actors

        return dramatiq_actors

    def worker_commands(self, mode: str) -> list[list[str]]:
        processes = "2" if mode == MULTI else "1"
        return [
            [
                self.env.script("dramatiq"), "bench.apps.dramatiq_actors",
                "--processes", processes, "--threads", "1", "--queues", self.actors.QUEUE,
            ]
        ]  # fmt: skip

    def fill(self, n: int) -> None:
        noop = self.actors.noop
        for _ in range(n):
            noop.send()

    def pending(self) -> int:
        # Messages stay in `<namespace>:<queue>.msgs` until acknowledged.
        return int(self.client.hlen(f"dramatiq:{self.actors.QUEUE}.msgs"))

    def producer(self) -> Producer:
        stamp = self.actors.stamp

        def enqueue(t0: float) -> None:
            stamp.send(t0)

        return enqueue

    def close(self) -> None:
        self.client.close()
