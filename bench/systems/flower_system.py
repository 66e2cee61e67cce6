"""Flower's `POST /api/task/async-apply/<task>` on the bare Celery app (auth off)."""

from __future__ import annotations

from bench.procs import WorkerGroup
from bench.redis_server import free_port
from bench.systems.base import BenchEnv
from bench.systems.celery_system import BareCelery


class Flower:
    """A Flower process for the bench's Celery app on a free port."""

    name = "flower"
    description = "Flower async-apply on the bare Celery app (one process)"

    def __init__(self, env: BenchEnv) -> None:
        self.env = env
        self.port = free_port()

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self, log_name: str) -> WorkerGroup:
        env = BareCelery(self.env).process_env()
        env["FLOWER_UNAUTHENTICATED_API"] = "true"
        cmd = [
            self.env.python, "-m", "celery", "-A", "bench.apps.celery_app", "flower",
            f"--port={self.port}", "--address=127.0.0.1", "--persistent=False",
        ]  # fmt: skip
        log_path = self.env.workdir / "logs" / f"{log_name}.log"
        log_path.parent.mkdir(parents=True, exist_ok=True)
        return WorkerGroup([cmd], env, log_path, self.env.root)

    def single_request(self) -> tuple[str, dict[str, object]]:
        """URL path and JSON body that enqueue one no-op job."""
        return "/api/task/async-apply/bench.noop", {"args": []}
