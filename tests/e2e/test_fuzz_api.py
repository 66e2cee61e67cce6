"""The HTTP API fuzzed from its own OpenAPI document with schemathesis.

A real `jobyard api` (uvicorn) answers the requests. The document is the app's own
(`create_app().openapi()`, checked equal to what the server serves at `/openapi.json`),
loaded at import: schemathesis' lazy fixture loader does not run on pytest 9. Every
operation gets a fixed number of generated requests (valid and invalid, derandomized so
a run repeats), and each generated enqueue body is sent again with registered jobs so the
success paths are fuzzed too. Checks: no 5xx; every response conforms to its documented
schema, status and content type; every 4xx is an `application/problem+json` document
whose `status` matches the response.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import pytest
import schemathesis
from hypothesis import HealthCheck, Phase, settings
from schemathesis.checks import not_a_server_error
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    response_schema_conformance,
    status_code_conformance,
)

from jobyard.api.app import create_app
from tests.e2e.cluster import ApiProc, Cluster

pytestmark = [pytest.mark.integration, pytest.mark.faults]

EXAMPLES_PER_OPERATION = 25
PROBLEM = "application/problem+json"


@pytest.fixture(scope="module")
def fuzzed_api(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ApiProc]:
    cluster = Cluster(tmp_path_factory.mktemp("fuzz"))
    try:
        yield cluster.api()
    finally:
        cluster.close()


OPENAPI = create_app().openapi()
schema = schemathesis.openapi.from_dict(OPENAPI)

REGISTERED_JOB = {"task": "jobyard.noop", "args": {}, "queue": "alpha"}
"""A job the API accepts: random task names are almost never registered ones."""


def _registered(item: Any) -> Any:
    return {**item, **REGISTERED_JOB} if isinstance(item, dict) else item


def registered_variant(body: Any) -> Any:
    """`body` with its job(s) turned into a registered task, or None if it has none."""
    if not isinstance(body, dict):
        return None
    variant = dict(body)
    if "task" in variant:
        variant = _registered(variant)
    if isinstance(variant.get("jobs"), list):
        variant["jobs"] = [_registered(item) for item in variant["jobs"]]
    return variant if variant != body else None


def problem_documents(ctx: Any, response: Any, case: Any) -> bool | None:
    """Every 4xx is a problem document naming its own status."""
    if not 400 <= response.status_code < 500:
        return None
    content_type = response.headers.get("content-type", [""])
    if isinstance(content_type, list):
        content_type = content_type[0] if content_type else ""
    assert content_type == PROBLEM, f"{response.status_code} with content-type {content_type!r}"
    body = json.loads(response.content)
    assert body["status"] == response.status_code, body
    assert body["type"].startswith("urn:jobyard:problem:"), body
    assert body["title"] and body["detail"], body
    return True


@schema.parametrize()
@settings(
    max_examples=EXAMPLES_PER_OPERATION,
    derandomize=True,
    database=None,
    deadline=None,
    phases=[Phase.explicit, Phase.generate],
    suppress_health_check=list(HealthCheck),
)
def test_every_operation_survives_generated_requests(case: Any, fuzzed_api: ApiProc) -> None:
    checks = [
        not_a_server_error,
        response_schema_conformance,
        status_code_conformance,
        content_type_conformance,
        problem_documents,
    ]
    case.call_and_validate(base_url=fuzzed_api.base_url, checks=checks, timeout=30)
    # The same request with registered jobs reaches the success paths and their schemas.
    variant = registered_variant(case.body)
    if variant is not None:
        case.body = variant
        case.call_and_validate(base_url=fuzzed_api.base_url, checks=checks, timeout=30)


def test_the_fuzzed_document_is_the_one_the_server_serves(fuzzed_api: ApiProc) -> None:
    served = fuzzed_api.http.get("/openapi.json")
    assert served.status_code == 200
    assert served.json() == json.loads(json.dumps(OPENAPI))


def test_fuzzing_reached_every_operation() -> None:
    operations = {(op.ok().method.upper(), op.ok().path) for op in schema.get_all_operations()}
    assert ("POST", "/v1/jobs") in operations
    assert ("DELETE", "/v1/dead-letters/{job_id}") in operations
    assert len(operations) == 18, sorted(operations)  # 16 under /v1, /healthz, /readyz
