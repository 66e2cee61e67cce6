"""jobyard, the full path: job records, metrics on (a worker `/metrics` server, multiprocess
mode), tracing configured with sampling off, JSON logs at INFO (the defaults)."""

from __future__ import annotations

import functools
from pathlib import Path
from typing import Any, ClassVar

import redis

from bench.procs import WorkerGroup
from bench.redis_server import free_port
from bench.systems.base import MULTI, BenchEnv, Producer, System

QUEUE = "bench"
SCALE_QUEUES = (QUEUE, *(f"q{i}" for i in range(1, 10)))
"""The ten queues of the config (the drain and latency workloads use the first)."""
JOB_MODULES = "bench.apps.jobyard_jobs"
FILL_CHUNK = 1000


def write_config(workdir: Path) -> Path:
    """jobyard.yaml with the defaults for every queue."""
    path = workdir / "jobyard.yaml"
    path.write_text("queues:\n" + "".join(f"  - name: {q}\n" for q in SCALE_QUEUES))
    return path


class Jobyard(System):
    name: ClassVar[str] = "jobyard"
    description: ClassVar[str] = (
        "jobyard worker (records, metrics, tracing sampled off, INFO JSON logs); "
        "solo: --pool solo; multi: --pool prefork -c 2"
    )
    poll_commands: ClassVar[int] = 2

    def __init__(self, env: BenchEnv) -> None:
        super().__init__(env)
        self.config_path = write_config(env.workdir)
        self.client = redis.Redis.from_url(env.redis.url)

    def jobyard_env(self) -> dict[str, str]:
        """JOBYARD_* and OTEL_* variables of every jobyard process of the run."""
        return {
            "JOBYARD_REDIS_URL": self.env.redis.url,
            "JOBYARD_CONFIG": str(self.config_path),
            "JOBYARD_JOB_MODULES": JOB_MODULES,
            "JOBYARD_HEARTBEAT_DIR": str(self.env.workdir / "jobyard-hb"),
            "JOBYARD_WORKER_METRICS_PORT": str(free_port()),
            # Tracing configured and instrumented, every span dropped by the sampler (an
            # exporter with nothing to export never connects).
            "OTEL_TRACES_EXPORTER": "otlp",
            "OTEL_EXPORTER_OTLP_ENDPOINT": f"http://127.0.0.1:{free_port()}",
            "OTEL_TRACES_SAMPLER": "always_off",
        }

    def process_env(self) -> dict[str, str]:
        env = super().process_env()
        env.update(self.jobyard_env())
        env.update(self.env.extra_env)
        return env

    @functools.cached_property
    def runtime(self) -> Any:
        from jobyard.core.bootstrap import bootstrap

        return bootstrap(self.jobyard_env())

    @functools.cached_property
    def celery(self) -> Any:
        from jobyard.core.celery_app import create_celery

        rt = self.runtime
        return create_celery(rt.settings, rt.config, rt.registry)

    def prepare(self, task: str, args: dict[str, Any], queue: str | None = None) -> Any:
        from jobyard.core.enqueue import EnqueueRequest, prepare

        rt = self.runtime
        return prepare(
            self.celery, rt.config, rt.registry, EnqueueRequest(task=task, args=args, queue=queue)
        )

    def worker_commands(self, mode: str) -> list[list[str]]:
        cmd = [self.env.python, "-m", "jobyard.cli", "worker", "--queue", QUEUE]
        if mode == MULTI:
            return [[*cmd, "--pool", "prefork", "--concurrency", "2"]]
        return [[*cmd, "--pool", "solo"]]

    def fill(self, n: int) -> None:
        from jobyard.core import store

        ttl = self.runtime.config.limits.result_ttl_s
        done = 0
        while done < n:
            pipe = self.client.pipeline(transaction=False)
            for _ in range(min(FILL_CHUNK, n - done)):
                job = self.prepare("bench.noop", {})
                store.plan_enqueue(pipe, job.record, job.message, result_ttl_s=ttl)
            pipe.execute()
            done += FILL_CHUNK

    def pending(self) -> int:
        from jobyard.core import keys

        pipe = self.client.pipeline(transaction=False)
        pipe.llen(QUEUE)
        pipe.hlen(keys.KOMBU_UNACKED)
        return sum(int(v) for v in pipe.execute())

    def producer(self) -> Producer:
        from jobyard.core import store

        ttl = self.runtime.config.limits.result_ttl_s

        def enqueue(t0: float) -> None:
            job = self.prepare("bench.stamp", {"t0": t0})
            pipe = self.client.pipeline(transaction=True)
            store.plan_enqueue(pipe, job.record, job.message, result_ttl_s=ttl)
            pipe.execute()

        return enqueue

    def close(self) -> None:
        self.client.close()


class JobyardApi:
    """The jobyard API process (`jobyard api`) on a free port."""

    name = "jobyard-api"

    def __init__(self, system: Jobyard) -> None:
        self.system = system
        self.port = free_port()

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self, log_name: str) -> WorkerGroup:
        env = self.system.process_env()
        env["JOBYARD_API_PORT"] = str(self.port)
        env["JOBYARD_API_AUTH"] = "none"  # as Flower's async-apply, which it is set beside
        cmd = [self.system.env.python, "-m", "jobyard.cli", "api"]
        log_path = self.system.env.workdir / "logs" / f"{log_name}.log"
        log_path.parent.mkdir(parents=True, exist_ok=True)
        return WorkerGroup([cmd], env, log_path, self.system.env.root)
