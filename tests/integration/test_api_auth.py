"""Bearer tokens: 401 without one, 403 with a wrong one, admin tokens for writes."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import httpx
import pytest

from jobyard.api.app import create_app
from jobyard.core.bootstrap import bootstrap
from jobyard.core.errors import ConfigError
from tests.integration.conftest import api_client, make_runtime
from tests.support.processes import wait_until
from tests.support.redis_server import free_port

pytestmark = [pytest.mark.integration, pytest.mark.anyio]

READ = {"Authorization": "Bearer read-token-1-abcdef"}
READ2 = {"Authorization": "Bearer read-token-2-abcdef"}
ADMIN = {"Authorization": "Bearer admin-token-abcdef"}
WRONG = {"Authorization": "Bearer nope"}
OPEN_PATHS = ("/healthz", "/readyz", "/metrics")
DOC_PATHS = ("/docs", "/redoc", "/openapi.json")


def _v1_operations() -> list[tuple[str, str]]:
    """Every /v1 operation, from the OpenAPI document (it lists every route)."""
    ops = []
    for path, operations in create_app().openapi()["paths"].items():
        if path.startswith("/v1"):
            concrete = re.sub(r"\{[^}]+\}", "some-id", path)
            ops.extend((method.upper(), concrete) for method in sorted(operations))
    return ops


V1_OPERATIONS = _v1_operations()


def test_every_v1_operation_is_listed() -> None:
    assert len(V1_OPERATIONS) == 16
    assert ("POST", "/v1/jobs:batch") in V1_OPERATIONS
    assert ("DELETE", "/v1/dead-letters") in V1_OPERATIONS


async def test_every_v1_endpoint_needs_a_token(redis_url: str, config_path: Path) -> None:
    rt = make_runtime(
        redis_url, config_path, JOBYARD_API_TOKENS="read-token-1-abcdef,read-token-2-abcdef"
    )
    async with api_client(rt) as api:
        for method, path in V1_OPERATIONS:
            r = await api.request(method, path)
            assert r.status_code == 401, (method, path, r.text)
            assert r.headers["www-authenticate"] == "Bearer"
            assert r.headers["content-type"] == "application/problem+json"
            assert r.json()["title"] == "Authentication required"
            r = await api.request(method, path, headers=WRONG)
            assert r.status_code == 403, (method, path, r.text)
            assert r.json()["detail"] == "the bearer token is not valid"
            r = await api.request(
                method, path, headers={"Authorization": "Basic read-token-1-abcdef"}
            )
            assert r.status_code == 401, (method, path)
        for path in OPEN_PATHS:
            assert (await api.get(path)).status_code == 200, path
        for path in DOC_PATHS:  # JOBYARD_API_DOCS is off unless set
            r = await api.get(path)
            assert r.status_code == 404, path
            assert "JOBYARD_API_DOCS=true" in r.json()["detail"]


async def test_docs_follow_their_setting(redis_url: str, config_path: Path) -> None:
    rt = make_runtime(
        redis_url,
        config_path,
        JOBYARD_ADMIN_TOKENS="admin-token-abcdef",
        JOBYARD_API_DOCS="true",
    )
    async with api_client(rt) as api:
        for path in DOC_PATHS:
            assert (await api.get(path)).status_code == 200, path
        assert "/v1/jobs" in (await api.get("/openapi.json")).json()["paths"]
        assert (await api.get("/v1/tasks")).status_code == 401


async def test_api_tokens_allow_reads_and_writes(redis_url: str, config_path: Path) -> None:
    rt = make_runtime(
        redis_url, config_path, JOBYARD_API_TOKENS="read-token-1-abcdef,read-token-2-abcdef"
    )
    async with api_client(rt) as api:
        r = await api.post("/v1/jobs", json={"task": "jobyard.noop"}, headers=READ2)
        assert r.status_code == 201
        assert (await api.get(f"/v1/jobs/{r.json()['id']}", headers=READ)).status_code == 200
        assert (await api.get("/v1/queues", headers=READ)).status_code == 200


async def test_admin_tokens_guard_writes(redis_url: str, config_path: Path) -> None:
    rt = make_runtime(
        redis_url,
        config_path,
        JOBYARD_API_TOKENS="read-token-1-abcdef",
        JOBYARD_ADMIN_TOKENS="admin-token-abcdef",
    )
    async with api_client(rt) as api:
        r = await api.post("/v1/jobs", json={"task": "jobyard.noop"}, headers=READ)
        assert r.status_code == 403
        assert r.json()["detail"] == "this endpoint changes state and needs an admin token"
        r = await api.delete("/v1/dead-letters", params={"queue": "default"}, headers=READ)
        assert r.status_code == 403
        r = await api.post("/v1/jobs", json={"task": "jobyard.noop"}, headers=WRONG)
        assert r.status_code == 403
        assert r.json()["detail"] == "the bearer token is not valid"
        assert (await api.post("/v1/jobs", json={"task": "jobyard.noop"})).status_code == 401
        r = await api.post("/v1/jobs", json={"task": "jobyard.noop"}, headers=ADMIN)
        assert r.status_code == 201
        job_id = r.json()["id"]
        assert (await api.get(f"/v1/jobs/{job_id}", headers=READ)).status_code == 200
        assert (await api.get(f"/v1/jobs/{job_id}", headers=ADMIN)).status_code == 200
        assert (await api.post(f"/v1/jobs/{job_id}/cancel", headers=READ)).status_code == 403
        assert (await api.post(f"/v1/jobs/{job_id}/cancel", headers=ADMIN)).status_code == 200


async def test_admin_tokens_alone_guard_reads_too(redis_url: str, config_path: Path) -> None:
    rt = make_runtime(redis_url, config_path, JOBYARD_ADMIN_TOKENS="admin-token-abcdef")
    async with api_client(rt) as api:
        for method, path in V1_OPERATIONS:
            assert (await api.request(method, path)).status_code == 401, (method, path)
        assert (await api.get("/v1/tasks", headers=ADMIN)).status_code == 200
        assert (await api.post("/v1/jobs", json={"task": "jobyard.noop"})).status_code == 401
        r = await api.post("/v1/jobs", json={"task": "jobyard.noop"}, headers=ADMIN)
        assert r.status_code == 201


async def test_openapi_documents_bearer_and_problems(api: httpx.AsyncClient) -> None:
    schema = (await api.get("/openapi.json")).json()
    assert schema["components"]["securitySchemes"]["bearer"] == {
        "type": "http",
        "description": "A token from JOBYARD_API_TOKENS (reads) or JOBYARD_ADMIN_TOKENS (writes).",
        "scheme": "bearer",
    }
    enqueue = schema["paths"]["/v1/jobs"]["post"]
    assert enqueue["security"] == [{"bearer": []}]
    assert enqueue["summary"] == "Enqueue a job"
    assert enqueue["tags"] == ["jobs"]
    assert set(enqueue["responses"]) == {
        "200",
        "201",
        "401",
        "403",
        "404",
        "409",
        "413",
        "422",
        "503",
    }
    assert enqueue["responses"]["422"]["content"] == {
        "application/problem+json": {"schema": {"$ref": "#/components/schemas/Problem"}}
    }
    for path, operations in schema["paths"].items():
        for method, op in operations.items():
            assert op.get("summary"), (method, path)
            assert op.get("tags"), (method, path)
            assert (
                "200" in op["responses"] or "201" in op["responses"] or "204" in op["responses"]
            ), (method, path)
            if path.startswith("/v1"):
                assert op["security"] == [{"bearer": []}], (method, path)
    assert "HTTPValidationError" not in schema["components"]["schemas"]
    docs = await api.get("/docs")
    assert docs.status_code == 200
    assert "swagger" in docs.text.lower()


def test_the_api_does_not_start_open_by_accident(redis_url: str, config_path: Path) -> None:
    base = {"JOBYARD_REDIS_URL": redis_url, "JOBYARD_CONFIG": str(config_path)}
    with pytest.raises(ConfigError, match="JOBYARD_API_AUTH=none to run it open on purpose"):
        create_app(bootstrap({**base, "JOBYARD_API_AUTH": "tokens"}))
    with pytest.raises(ConfigError, match="JOBYARD_API_AUTH=none, but JOBYARD_API_TOKENS"):
        create_app(
            bootstrap(
                {**base, "JOBYARD_API_AUTH": "none", "JOBYARD_API_TOKENS": "read-token-1-abcdef"}
            )
        )


def test_jobyard_api_refuses_to_start_without_tokens(spawn: Any) -> None:
    proc = spawn("api", "--port", str(free_port()), env={"JOBYARD_API_AUTH": "tokens"})
    assert proc.popen.wait(timeout=60) != 0
    log = proc.log()
    assert "JOBYARD_API_TOKENS and JOBYARD_ADMIN_TOKENS are both unset" in log
    assert "Traceback" not in log


def test_an_open_api_says_so_at_start(spawn: Any) -> None:
    port = free_port()
    proc = spawn("api", "--port", str(port), env={"JOBYARD_API_AUTH": "none"})
    wait_until(lambda: "the API is open" in proc.log(), timeout_s=60)
    line = next(json.loads(x) for x in proc.log().splitlines() if "the API is open" in x)
    assert line["level"] == "warning"
    assert "without a token" in line["event"]
