"""RQ with its defaults: SimpleWorker (runs jobs in the worker process) and the default
forking Worker (a work horse process per job); multi: `rq worker-pool -n 2`."""

from __future__ import annotations

from typing import ClassVar

import redis
from rq import Queue
from rq.registry import StartedJobRegistry

from bench.apps import rq_jobs
from bench.systems.base import MULTI, SOLO, BenchEnv, Producer, System

QUEUE = "bench"
FILL_CHUNK = 1000


class _Rq(System):
    worker_class: ClassVar[str]
    poll_commands: ClassVar[int] = 2

    def __init__(self, env: BenchEnv) -> None:
        super().__init__(env)
        self.client = redis.Redis.from_url(env.redis.url)
        self.queue = Queue(QUEUE, connection=self.client)
        self.started_key = StartedJobRegistry(queue=self.queue).key

    def worker_commands(self, mode: str) -> list[list[str]]:
        rq = self.env.script("rq")
        common = ["--url", self.env.redis.url, "-w", self.worker_class]
        if mode == MULTI:
            return [[rq, "worker-pool", *common, "-n", "2", QUEUE]]
        return [[rq, "worker", *common, QUEUE]]

    def fill(self, n: int) -> None:
        done = 0
        while done < n:
            size = min(FILL_CHUNK, n - done)
            pipe = self.client.pipeline()
            self.queue.enqueue_many(
                [Queue.prepare_data(rq_jobs.noop) for _ in range(size)], pipeline=pipe
            )
            pipe.execute()
            done += size

    def pending(self) -> int:
        pipe = self.client.pipeline(transaction=False)
        pipe.llen(self.queue.key)
        pipe.zcard(self.started_key)
        return sum(int(v) for v in pipe.execute())

    def producer(self) -> Producer:
        def enqueue(t0: float) -> None:
            self.queue.enqueue(rq_jobs.stamp, t0)

        return enqueue

    def close(self) -> None:
        self.client.close()


class RqSimple(_Rq):
    name: ClassVar[str] = "rq-simple"
    description: ClassVar[str] = "RQ SimpleWorker; multi: rq worker-pool -n 2"
    worker_class: ClassVar[str] = "rq.worker.SimpleWorker"


class RqFork(_Rq):
    name: ClassVar[str] = "rq-fork"
    description: ClassVar[str] = (
        "RQ default Worker (forks a work horse per job); solo only (a pool of forking "
        "workers is rq-simple's pool plus a fork per job)"
    )
    worker_class: ClassVar[str] = "rq.worker.Worker"
    modes: ClassVar[tuple[str, ...]] = (SOLO,)
