"""Hostile HTTP input against a real `jobyard api` (uvicorn), beyond what
`tests/integration/test_api_errors.py` covers over ASGI: JSON nested thousands of levels
deep, huge arrays, `Idempotency-Key` values with control or non-ASCII bytes (sent raw),
non-JSON content types, absurd query values. Each gets an exact status and, when it
reaches the app, a problem document naming the field; nothing is written to Redis."""

from __future__ import annotations

import json
import socket
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from jobyard.core import keys
from tests.e2e.cluster import ApiProc, Cluster

pytestmark = [pytest.mark.integration, pytest.mark.faults]

PROBLEM = "application/problem+json"
NOOP = {"task": "jobyard.noop", "queue": "alpha"}


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Cluster, ApiProc]]:
    cluster = Cluster(tmp_path_factory.mktemp("hostile"))
    try:
        yield cluster, cluster.api()
    finally:
        cluster.close()


def _post_raw(api: ApiProc, body: bytes, content_type: str = "application/json") -> Any:
    return api.http.post("/v1/jobs", content=body, headers={"content-type": content_type})


def _only_error(response: Any) -> dict[str, str]:
    assert response.headers["content-type"] == PROBLEM, response.text
    (error,) = response.json()["errors"]
    return dict(error)


def _jobs_in_redis(cluster: Cluster) -> int:
    return int(cluster.client.zcard(keys.RECENT))


def _nested(depth: int) -> str:
    return "[" * depth + "]" * depth


RAW = "@raw@"


def _with_raw(document: dict[str, Any], raw: str) -> str:
    """`document` as JSON with the string RAW replaced by the raw JSON text `raw`."""
    return json.dumps(document).replace(json.dumps(RAW), raw)


@pytest.mark.parametrize("depth", [1_000, 10_000, 100_000])
@pytest.mark.parametrize("where", ["args", "top level"])
def test_deeply_nested_json_is_422_not_a_crash(
    served: tuple[Cluster, ApiProc], depth: int, where: str
) -> None:
    cluster, api = served
    before = _jobs_in_redis(cluster)
    nested = _nested(depth)
    body = nested if where == "top level" else _with_raw({**NOOP, "args": {"a": RAW}}, nested)
    r = _post_raw(api, body.encode())
    assert r.status_code == 422, r.text
    assert _only_error(r) == {
        "field": "body",
        "message": "invalid JSON: nested too deeply to parse",
    }
    assert api.http.get("/healthz").status_code == 200
    assert _jobs_in_redis(cluster) == before


def test_nesting_the_argument_model_refuses_names_its_field(
    served: tuple[Cluster, ApiProc],
) -> None:
    cluster, api = served
    before = _jobs_in_redis(cluster)
    args = {"url": "http://8.8.8.8:9/hook", "body": {"a": RAW}}
    body = _with_raw({"task": "webhook.deliver", "queue": "alpha", "args": args}, _nested(300))
    r = _post_raw(api, body.encode())
    assert r.status_code == 422, r.text
    error = _only_error(r)
    assert error["field"].startswith("args.body.a.list[0].list[0]")
    assert error["message"] == "Recursion error - maximum validation depth exceeded"
    assert _jobs_in_redis(cluster) == before


def test_huge_arrays_are_refused_by_field_or_stored_whole(
    served: tuple[Cluster, ApiProc],
) -> None:
    cluster, api = served
    before = _jobs_in_redis(cluster)
    r = api.http.post("/v1/jobs", json={**NOOP, "args": {"items": [0] * 60_000}})
    assert r.status_code == 422
    assert _only_error(r) == {
        "field": "args.items",
        "message": "unknown field (check its spelling)",
    }
    # A job whose arguments do take any JSON keeps all 60 000 items.
    hook = {"url": "http://8.8.8.8:9/hook", "body": {"items": [7] * 60_000}}
    r = api.http.post("/v1/jobs", json={"task": "webhook.deliver", "queue": "alpha", "args": hook})
    assert r.status_code == 201, r.text
    stored = api.http.get(f"/v1/jobs/{r.json()['id']}").json()
    assert stored["args"]["body"]["items"] == [7] * 60_000
    assert _jobs_in_redis(cluster) == before + 1
    # Too many jobs in one batch: the field and the limit are named.
    r = api.http.post("/v1/jobs:batch", json={"jobs": [NOOP] * 1001})
    assert r.status_code == 422
    assert _only_error(r) == {
        "field": "jobs",
        "message": "at most 1000 jobs per batch (limits.max_batch_size), got 1001",
    }


def _raw_request(api: ApiProc, head: bytes, body: bytes) -> tuple[int, str, bytes]:
    """Send bytes httpx would refuse to send; (status, content-type, body)."""
    host, port = api.base_url.removeprefix("http://").split(":")
    with socket.create_connection((host, int(port)), timeout=10) as sock:
        sock.sendall(head + b"Content-Length: %d\r\nConnection: close\r\n\r\n" % len(body) + body)
        data = b""
        while chunk := sock.recv(65536):
            data += chunk
    header, _, payload = data.partition(b"\r\n\r\n")
    lines = header.decode("latin-1").split("\r\n")
    status = int(lines[0].split()[1])
    fields = dict(line.split(": ", 1) for line in lines[1:])
    return status, fields.get("content-type", ""), payload


@pytest.mark.parametrize(
    ("key", "status"),
    [
        (b"tab\there", 422),
        (b"caf\xe9", 422),  # not ASCII
        (b"x" * 201, 422),
        (b"ctl\x01char", 400),  # refused by the HTTP server before the app
        (b"del\x7fchar", 400),
    ],
)
def test_bad_idempotency_keys_are_refused(
    served: tuple[Cluster, ApiProc], key: bytes, status: int
) -> None:
    cluster, api = served
    before = _jobs_in_redis(cluster)
    head = (
        b"POST /v1/jobs HTTP/1.1\r\nHost: jobyard\r\nContent-Type: application/json\r\n"
        b"Idempotency-Key: " + key + b"\r\n"
    )
    got, content_type, payload = _raw_request(api, head, json.dumps(NOOP).encode())
    assert got == status, payload
    if status == 422:
        assert content_type == PROBLEM
        (error,) = json.loads(payload)["errors"]
        assert error["field"] == "Idempotency-Key"
        assert error["message"] == "String should match pattern '^[\\x20-\\x7e]{1,200}$'"
    else:
        assert payload == b"Invalid HTTP request received."
    assert _jobs_in_redis(cluster) == before


@pytest.mark.parametrize(
    ("path", "params", "field", "message"),
    [
        ("/v1/jobs", {"limit": str(10**30)}, "limit", "Input should be less than or equal to 500"),
        ("/v1/jobs", {"limit": "-1"}, "limit", "Input should be greater than or equal to 1"),
        ("/v1/jobs", {"state": "bogus"}, "state", "Input should be 'queued', 'scheduled', "),
        ("/v1/jobs", {"queue": "nope"}, "queue", "unknown queue 'nope'; configured queues: "),
        ("/v1/dead-letters", {"limit": "1e9"}, "limit", "Input should be a valid integer"),
    ],
)
def test_absurd_query_values_name_the_parameter(
    served: tuple[Cluster, ApiProc], path: str, params: dict[str, str], field: str, message: str
) -> None:
    _, api = served
    r = api.http.get(path, params=params)
    assert r.status_code == 422, r.text
    error = _only_error(r)
    assert error["field"] == field
    assert error["message"].startswith(message), error


def test_a_body_that_is_not_declared_json_is_refused(served: tuple[Cluster, ApiProc]) -> None:
    cluster, api = served
    before = _jobs_in_redis(cluster)
    for content_type in ("text/plain", "application/x-www-form-urlencoded"):
        r = _post_raw(api, json.dumps(NOOP).encode(), content_type)
        assert r.status_code == 422, (content_type, r.text)
        assert _only_error(r) == {
            "field": "body",
            "message": "Input should be a valid dictionary or object to extract fields from",
        }
    r = _post_raw(api, b'{"task": "jobyard.noop\xff"}')
    assert r.status_code == 422
    assert _only_error(r) == {
        "field": "body",
        "message": "invalid JSON: the body is not UTF-8 text",
    }
    assert _jobs_in_redis(cluster) == before


def test_the_server_still_answers_after_all_of_it(
    served: tuple[Cluster, ApiProc], tmp_path: Path
) -> None:
    cluster, api = served
    assert api.proc.popen.poll() is None
    r = api.http.post("/v1/jobs", json=NOOP)
    assert r.status_code == 201
    assert cluster.states([r.json()["id"]]) == {r.json()["id"]: "queued"}
