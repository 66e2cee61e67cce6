"""Bare Celery 5 with reliable settings (`bench.apps.celery_app`): late ack, no prefetch,
JSON, results ignored, no events, no gossip/mingle/heartbeat, Celery's default log level."""

from __future__ import annotations

import uuid
from typing import Any, ClassVar

import redis

from bench.systems.base import MULTI, BenchEnv, Producer, System

QUEUE = "bench"
PRIORITY_STEPS = (0, 3, 6, 9)
"""kombu's default priority steps (a priority-0 message goes to the bare queue list)."""
FILL_CHUNK = 1000


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
        # Messages as Celery's producer publishes them (jobyard's builder is checked
        # byte for byte against kombu's publish), pushed in big pipelines: the fill is
        # not measured, only the drain.
        from jobyard.core.messages import build_message

        app = self.app_module.app
        done = 0
        while done < n:
            size = min(FILL_CHUNK, n - done)
            pipe = self.client.pipeline(transaction=False)
            for _ in range(size):
                msg = build_message(
                    app,
                    task_id=str(uuid.uuid4()),
                    task_name="bench.noop",
                    kwargs={},
                    queue=QUEUE,
                    priority=0,
                    priority_steps=PRIORITY_STEPS,
                )
                pipe.lpush(msg.list_key, msg.payload)
            pipe.execute()
            done += size

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
