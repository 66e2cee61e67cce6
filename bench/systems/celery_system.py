"""Bare Celery 5 with reliable settings (`bench.apps.celery_app`): late ack, no prefetch,
JSON, results ignored, no events, no gossip/mingle/heartbeat, Celery's default log level."""

from __future__ import annotations

from typing import Any, ClassVar

import redis

from bench.systems.base import MULTI, BenchEnv, Producer, System

QUEUE = "bench"


class BareCelery(System):
    name: ClassVar[str] = "celery"
    description: ClassVar[str] = (
        "Celery worker, reliable settings; solo: -P solo; multi: -P prefork -c 2"
    )
    poll_commands: ClassVar[int] = 2

    def __init__(self, env: BenchEnv) -> None:
        super().__init__(env)
        self.client = redis.Redis.from_url(env.redis.url)

    @property
    def app_module(self) -> Any:
        from bench.apps import celery_app

        return celery_app

    def worker_commands(self, mode: str) -> list[list[str]]:
        cmd = [
            self.env.python, "-m", "celery", "-A", "bench.apps.celery_app", "worker",
            "-Q", QUEUE, "--without-gossip", "--without-mingle", "--without-heartbeat",
            "-l", "WARNING",
        ]  # fmt: skip
        if mode == MULTI:
            return [[*cmd, "-P", "prefork", "-c", "2"]]
        return [[*cmd, "-P", "solo"]]

    def fill(self, n: int) -> None:
        app = self.app_module.app
        noop = self.app_module.noop
        with app.producer_or_acquire() as producer:
            for _ in range(n):
                noop.apply_async(producer=producer)

    def pending(self) -> int:
        pipe = self.client.pipeline(transaction=False)
        pipe.llen(QUEUE)
        pipe.hlen("unacked")
        return sum(int(v) for v in pipe.execute())

    def producer(self) -> Producer:
        stamp = self.app_module.stamp

        def enqueue(t0: float) -> None:
            stamp.apply_async(kwargs={"t0": t0})

        return enqueue

    def close(self) -> None:
        self.client.close()
