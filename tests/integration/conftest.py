"""Fixtures for API integration tests: a real app (lifespan run) over ASGI, real Redis,
real worker processes loading `tests.support.testjobs`."""

from __future__ import annotations

import time
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any, TypeVar

import anyio
import httpx
import pytest

from jobyard.api.app import create_app
from jobyard.core.bootstrap import Runtime, bootstrap
from tests.support.processes import open_api_unless_tokens

T = TypeVar("T")

TEST_JOB_MODULES = "tests.support.testjobs"
WORKER_ENV = {"JOBYARD_JOB_MODULES": TEST_JOB_MODULES, "JOBYARD_WORKER_METRICS_PORT": "0"}
"""Pass to `spawn(..., env=WORKER_ENV)`: workers know the test jobs and bind no fixed port
(tests run in parallel on one host)."""

WORKER_READY = "ready."
"""Celery's `<queue>@<host> ready.` log line (plain "ready" also matches "already")."""

API_BASE_URL = "http://jobyard.test"


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


def make_runtime(redis_url: str, config_path: Path, **env: str) -> Runtime:
    """A runtime like `jobyard api` would bootstrap, with the test jobs loaded."""
    return bootstrap(
        open_api_unless_tokens(
            {
                "JOBYARD_REDIS_URL": redis_url,
                "JOBYARD_CONFIG": str(config_path),
                "JOBYARD_JOB_MODULES": TEST_JOB_MODULES,
                **env,
            }
        )
    )


@asynccontextmanager
async def api_client(runtime: Runtime) -> AsyncIterator[httpx.AsyncClient]:
    """An HTTP client talking to a fresh app over ASGI, with the app's lifespan running."""
    app = create_app(runtime)
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url=API_BASE_URL) as client:
            yield client


@pytest.fixture
def runtime(redis_url: str, config_path: Path) -> Runtime:
    return make_runtime(redis_url, config_path)


@pytest.fixture
async def api(runtime: Runtime) -> AsyncIterator[httpx.AsyncClient]:
    """The API of the test's Redis and config, without authentication."""
    async with api_client(runtime) as client:
        yield client


@pytest.fixture
def worker(spawn: Any) -> Iterator[Any]:
    """A real worker of the `default` queue that knows the test jobs."""
    proc = spawn("worker", "--queue", "default", env=WORKER_ENV)
    proc.wait_for_log(WORKER_READY, timeout_s=60)
    yield proc


async def eventually(
    probe: Callable[[], Awaitable[T]],
    check: Callable[[T], bool],
    *,
    timeout_s: float = 30,
    interval_s: float = 0.05,
) -> T:
    """Poll `probe` until `check` accepts its value; fail with the last value."""
    deadline = time.monotonic() + timeout_s
    value = await probe()
    while not check(value):
        if time.monotonic() > deadline:
            raise AssertionError(f"condition not met after {timeout_s} s; last value: {value!r}")
        await anyio.sleep(interval_s)
        value = await probe()
    return value


async def job_until(
    api: httpx.AsyncClient, job_id: str, check: Callable[[dict[str, Any]], bool], **kw: Any
) -> dict[str, Any]:
    """Poll `GET /v1/jobs/{id}` until `check` accepts the record."""

    async def probe() -> dict[str, Any]:
        response = await api.get(f"/v1/jobs/{job_id}")
        assert response.status_code == 200, response.text
        body: dict[str, Any] = response.json()
        return body

    return await eventually(probe, check, **kw)


async def job_in_state(
    api: httpx.AsyncClient, job_id: str, *states: str, **kw: Any
) -> dict[str, Any]:
    """Poll until the job reaches one of `states`."""
    return await job_until(api, job_id, lambda r: r["state"] in states, **kw)
