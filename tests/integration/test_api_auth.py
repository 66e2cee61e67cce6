"""Bearer tokens: 401 without one, 403 with a wrong one, admin tokens for writes."""

from __future__ import annotations

import re
from pathlib import Path

import httpx
import pytest

from jobyard.api.app import create_app
from tests.integration.conftest import api_client, make_runtime

pytestmark = [pytest.mark.integration, pytest.mark.anyio]

READ = {"Authorization": "Bearer read-token-1"}
READ2 = {"Authorization": "Bearer read-token-2"}
ADMIN = {"Authorization": "Bearer admin-token"}
WRONG = {"Authorization": "Bearer nope"}
OPEN_PATHS = ("/healthz", "/readyz", "/docs", "/openapi.json")


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
    rt = make_runtime(redis_url, config_path, JOBYARD_API_TOKENS="read-token-1,read-token-2")
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
            r = await api.request(method, path, headers={"Authorization": "Basic read-token-1"})
            assert r.status_code == 401, (method, path)
        for path in OPEN_PATHS:
            assert (await api.get(path)).status_code == 200, path


async def test_api_tokens_allow_reads_and_writes(redis_url: str, config_path: Path) -> None:
    rt = make_runtime(redis_url, config_path, JOBYARD_API_TOKENS="read-token-1,read-token-2")
    async with api_client(rt) as api:
        r = await api.post("/v1/jobs", json={"task": "jobyard.noop"}, headers=READ2)
        assert r.status_code == 201
        assert (await api.get(f"/v1/jobs/{r.json()['id']}", headers=READ)).status_code == 200
        assert (await api.get("/v1/queues", headers=READ)).status_code == 200


async def test_admin_tokens_guard_writes(redis_url: str, config_path: Path) -> None:
    rt = make_runtime(
        redis_url,
        config_path,
        JOBYARD_API_TOKENS="read-token-1",
        JOBYARD_ADMIN_TOKENS="admin-token",
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


async def test_admin_tokens_alone_leave_reads_open(redis_url: str, config_path: Path) -> None:
    rt = make_runtime(redis_url, config_path, JOBYARD_ADMIN_TOKENS="admin-token")
    async with api_client(rt) as api:
        assert (await api.get("/v1/tasks")).status_code == 200
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
