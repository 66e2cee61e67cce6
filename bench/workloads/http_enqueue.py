"""HTTP enqueue: concurrent clients post no-op jobs for a fixed time against the jobyard
API (`POST /v1/jobs`, `POST /v1/jobs:batch` with 100 jobs a request) and Flower's
`POST /api/task/async-apply/<task>`; no worker runs. Reported: accepted jobs per second
and request latency."""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass
from typing import Any

import aiohttp

from bench.procs import WorkerGroup
from bench.redis_server import BenchRedis
from bench.stats import percentile
from bench.systems import BenchError

BATCH_SIZE = 100
READY_TIMEOUT_S = 60.0


@dataclass(frozen=True)
class Target:
    """One endpoint under load: what to post and how many jobs one request carries."""

    server: str
    """Which server answers (its process is measured)."""
    name: str
    url: str
    body: dict[str, Any]
    jobs_per_request: int
    ok_status: int


def wait_http_ready(url: str, group: WorkerGroup, timeout_s: float = READY_TIMEOUT_S) -> None:
    async def probe() -> None:
        deadline = time.monotonic() + timeout_s
        async with aiohttp.ClientSession() as session:
            while True:
                try:
                    async with session.get(url) as resp:
                        if resp.status == 200:
                            return
                except aiohttp.ClientError:
                    pass
                if not group.alive():
                    raise BenchError(f"server exited:\n{group.log()[-3000:]}")
                if time.monotonic() > deadline:
                    raise BenchError(f"{url} not ready after {timeout_s:g} s")
                await asyncio.sleep(0.1)

    asyncio.run(probe())


async def _load(target: Target, clients: int, duration_s: float) -> dict[str, Any]:
    latencies: list[float] = []
    errors: dict[str, int] = {}
    accepted = 0
    connector = aiohttp.TCPConnector(limit=clients)
    async with aiohttp.ClientSession(connector=connector) as session:
        deadline = time.perf_counter() + duration_s

        async def client() -> None:
            nonlocal accepted
            while time.perf_counter() < deadline:
                t0 = time.perf_counter()
                async with session.post(target.url, json=target.body) as resp:
                    await resp.read()
                    status = resp.status
                latencies.append(time.perf_counter() - t0)
                if status == target.ok_status:
                    accepted += target.jobs_per_request
                else:
                    errors[str(status)] = errors.get(str(status), 0) + 1

        start = time.perf_counter()
        await asyncio.gather(*(client() for _ in range(clients)))
        elapsed_s = time.perf_counter() - start
    ordered = sorted(latencies)
    return {
        "elapsed_s": elapsed_s,
        "jobs_per_s": accepted / elapsed_s,
        "requests_per_s": len(ordered) / elapsed_s,
        "p50_ms": percentile(ordered, 50) * 1000,
        "p99_ms": percentile(ordered, 99) * 1000,
        "requests": len(ordered),
        "errors": errors,
    }


def run_http(
    target: Target, redis: BenchRedis, server: WorkerGroup, *, clients: int, duration_s: float
) -> dict[str, Any]:
    """One measurement against a server that is already up; `server_cpu_us_per_job` is
    the server process's CPU time per accepted job."""
    redis.reset()
    cpu_before = server.cpu_s()
    result = asyncio.run(_load(target, clients, duration_s))
    cpu_s = server.cpu_s() - cpu_before
    if result["errors"]:
        raise BenchError(f"{target.name}: error responses {result['errors']}")
    accepted = result["jobs_per_s"] * result.pop("elapsed_s")
    result["server_cpu_us_per_job"] = cpu_s / accepted * 1e6 if accepted else 0.0
    return result
