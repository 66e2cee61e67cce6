"""The API served for real: `jobyard api` (uvicorn via `run_api`), and `create_app()` bootstrapping
from the environment."""

from __future__ import annotations

import os
import signal
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from jobyard.api.app import create_app
from tests.integration.conftest import API_BASE_URL, WORKER_ENV
from tests.support.processes import wait_until
from tests.support.redis_server import free_port

pytestmark = pytest.mark.integration


def test_jobyard_api_serves_http_and_stops_on_sigterm(spawn: Any) -> None:
    port = free_port()
    proc = spawn("api", env={**WORKER_ENV, "JOBYARD_API_PORT": str(port)})
    base = f"http://127.0.0.1:{port}"

    def ready() -> bool:
        try:
            return httpx.get(f"{base}/readyz", timeout=2).status_code == 200
        except httpx.TransportError:
            return False

    wait_until(ready, timeout_s=60)
    with httpx.Client(base_url=base, timeout=10) as http:
        r = http.post("/v1/jobs", json={"task": "tests.flaky"})
        assert r.status_code == 201
        assert r.headers["location"] == f"/v1/jobs/{r.json()['id']}"
        assert "server" not in r.headers
        assert http.get(r.headers["location"]).json()["state"] == "queued"

        def body() -> Iterator[bytes]:  # chunked, no Content-Length
            yield b'{"task": "tests.record_effect", "args": {"path": "'
            for _ in range(300):
                yield b"x" * 1000
            yield b'"}}'

        r = http.post("/v1/jobs", content=body(), headers={"content-type": "application/json"})
        assert r.status_code == 413
        assert r.headers["content-type"] == "application/problem+json"
        assert "/v1/jobs:batch" in http.get("/openapi.json").json()["paths"]
    code = proc.stop()
    # Graceful: the lifespan shut down; uvicorn then re-raises the SIGTERM it caught.
    assert "Application shutdown complete." in proc.log()
    assert code in (0, -signal.SIGTERM)


@pytest.mark.anyio
async def test_create_app_without_runtime_bootstraps_from_the_environment(
    monkeypatch: pytest.MonkeyPatch, redis_url: str, config_path: Path
) -> None:
    for name in [n for n in os.environ if n.startswith("JOBYARD_")]:
        monkeypatch.delenv(name)
    monkeypatch.setenv("JOBYARD_REDIS_URL", redis_url)
    monkeypatch.setenv("JOBYARD_CONFIG", str(config_path))
    monkeypatch.setenv("JOBYARD_API_TOKENS", "from-env-0123456789")
    app = create_app()  # nothing is read yet
    monkeypatch.setenv("JOBYARD_JOB_MODULES", "tests.support.testjobs")
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url=API_BASE_URL) as api:
            assert (await api.get("/v1/tasks")).status_code == 401
            r = await api.get("/v1/tasks", headers={"Authorization": "Bearer from-env-0123456789"})
            assert r.status_code == 200
            assert "tests.sleep" in [t["name"] for t in r.json()["tasks"]]
