"""Every error is `application/problem+json` naming what was wrong; no input gives a 500."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from pathlib import Path

import httpx
import pytest
import redis

from jobyard.core.bootstrap import Runtime
from tests.integration.conftest import api_client, make_runtime
from tests.support.redis_server import RedisProcess

pytestmark = [pytest.mark.integration, pytest.mark.anyio]

PROBLEM = "application/problem+json"


async def _post_job(api: httpx.AsyncClient, **body: object) -> httpx.Response:
    return await api.post("/v1/jobs", json=body)


def _fields(response: httpx.Response) -> list[str]:
    return [e["field"] for e in response.json()["errors"]]


async def test_unknown_task_is_404_listing_known_tasks(
    api: httpx.AsyncClient, runtime: Runtime, redis_client: redis.Redis
) -> None:
    r = await _post_job(api, task="billing.invoice")
    assert r.status_code == 404
    assert r.headers["content-type"] == PROBLEM
    known = runtime.registry.names()
    assert {"jobyard.noop", "tests.flaky", "tests.sleep"} <= set(known)
    assert r.json() == {
        "type": "urn:jobyard:problem:unknown-task",
        "title": "Unknown task",
        "status": 404,
        "detail": f"unknown task 'billing.invoice'; registered tasks: {', '.join(known)}",
        "errors": [
            {
                "field": "task",
                "message": f"unknown task 'billing.invoice'; registered tasks: {', '.join(known)}",
            }
        ],
    }
    assert redis_client.dbsize() == 0


async def test_unknown_queue_is_422_listing_configured_queues(api: httpx.AsyncClient) -> None:
    r = await _post_job(api, task="jobyard.noop", queue="fast")
    assert r.status_code == 422
    assert r.json()["title"] == "Unknown queue"
    assert r.json()["errors"] == [
        {
            "field": "queue",
            "message": "unknown queue 'fast'; configured queues: default, emails, reports",
        }
    ]


async def test_invalid_args_name_each_field(
    api: httpx.AsyncClient, redis_client: redis.Redis
) -> None:
    r = await _post_job(
        api, task="tests.sleep", args={"seconds": "long", "step_s": 0, "colour": "red"}
    )
    assert r.status_code == 422
    problem = r.json()
    assert problem["title"] == "Invalid arguments"
    assert problem["errors"] == [
        {
            "field": "args.seconds",
            "message": "Input should be a valid number, unable to parse string as a number",
        },
        {"field": "args.step_s", "message": "Input should be greater than 0"},
        {"field": "args.colour", "message": "unknown field (check its spelling)"},
    ]
    assert problem["detail"].startswith("args.seconds: Input should be a valid number")
    missing = await _post_job(api, task="tests.sleep", args={})
    assert missing.json()["errors"] == [{"field": "args.seconds", "message": "Field required"}]
    assert redis_client.dbsize() == 0


@pytest.mark.parametrize(
    ("body", "field", "message"),
    [
        ({"priority": 10}, "priority", "Input should be less than or equal to 9"),
        ({"priority": -1}, "priority", "Input should be greater than or equal to 0"),
        ({"priority": "high"}, "priority", "Input should be a valid integer"),
        ({"delay_s": -5}, "delay_s", "Input should be greater than or equal to 0"),
        ({"delay_s": "soon"}, "delay_s", "Input should be a valid number"),
        ({"delay_s": 10**9}, "delay_s", "a job may be scheduled at most 2592000 s ahead"),
        ({"eta": "2030-01-01T00:00:00"}, "eta", "Input should have timezone info"),
        ({"eta": "tomorrow"}, "eta", "Input should be a valid datetime"),
        ({"eta": "2999-01-01T00:00:00Z"}, "eta", "a job may be scheduled at most 2592000 s ahead"),
        (
            {"eta": "2030-01-01T00:00:00Z", "delay_s": 5},
            "delay_s",
            "give either delay_s or eta, not both",
        ),
        ({"args": [1, 2]}, "args", "Input should be a valid dictionary"),
        ({"task": ""}, "task", "String should have at least 1 character"),
        ({"when": "now"}, "when", "unknown field (check its spelling)"),
    ],
)
async def test_bad_fields_are_422_naming_the_field(
    api: httpx.AsyncClient, body: dict[str, object], field: str, message: str
) -> None:
    r = await api.post("/v1/jobs", json={"task": "jobyard.noop", **body})
    assert r.status_code == 422, r.text
    assert r.headers["content-type"] == PROBLEM
    (error,) = r.json()["errors"]
    assert error["field"] == field
    assert error["message"].startswith(message), error["message"]


async def test_malformed_and_missing_bodies(api: httpx.AsyncClient) -> None:
    r = await api.post(
        "/v1/jobs", content=b'{"task": ', headers={"content-type": "application/json"}
    )
    assert r.status_code == 422
    (error,) = r.json()["errors"]
    assert error["field"] == "body"
    assert error["message"].startswith("invalid JSON at position 9")
    r = await api.post("/v1/jobs")
    assert r.status_code == 422
    assert r.json()["errors"] == [{"field": "body", "message": "a JSON body is required"}]
    r = await api.post("/v1/jobs", json=["jobyard.noop"])
    assert r.status_code == 422
    assert _fields(r) == ["body"]


async def test_body_over_the_limit_is_413(
    api: httpx.AsyncClient, runtime: Runtime, redis_client: redis.Redis
) -> None:
    limit = runtime.config.limits.max_payload_bytes
    big = {"task": "tests.record_effect", "args": {"path": "x" * limit}}
    r = await api.post("/v1/jobs", json=big)
    assert r.status_code == 413
    assert r.headers["content-type"] == PROBLEM
    assert r.json()["detail"] == (
        f"the request body exceeds limits.max_payload_bytes ({limit} bytes)"
    )

    async def chunks() -> AsyncIterator[bytes]:
        # A streamed body without Content-Length must not get past the limit either.
        yield b'{"task": "tests.record_effect", "args": {"path": "'
        for _ in range(limit // 1000 + 1):
            yield b"y" * 1000
        yield b'"}}'

    r = await api.post("/v1/jobs", content=chunks(), headers={"content-type": "application/json"})
    assert "content-length" not in r.request.headers
    assert r.status_code == 413
    batch = {"jobs": [{"task": "tests.record_effect", "args": {"path": "z" * 1000}}] * 300}
    r = await api.post("/v1/jobs:batch", json=batch)
    assert r.status_code == 413
    assert redis_client.dbsize() == 0
    # Just under the limit is accepted.
    fits = {"task": "tests.record_effect", "args": {"path": "x" * (limit - 200)}}
    assert (await api.post("/v1/jobs", json=fits)).status_code == 201


async def test_unknown_route_and_method_are_problems(api: httpx.AsyncClient) -> None:
    r = await api.get("/v1/nothing")
    assert r.status_code == 404
    assert r.headers["content-type"] == PROBLEM
    assert r.json()["detail"] == "no such endpoint; the API is described at /docs"
    r = await api.delete("/v1/jobs")
    assert r.status_code == 405
    assert r.headers["content-type"] == PROBLEM
    assert "POST" in r.headers["allow"]
    r = await api.get("/v1/jobs:batch")
    assert r.status_code == 405


async def test_redis_down_is_503(redis_url: str, config_path: Path) -> None:
    server = RedisProcess().start()
    try:
        rt = make_runtime(server.url, config_path)
        async with api_client(rt) as api:
            assert (await api.get("/readyz")).status_code == 200
            assert (await _post_job(api, task="jobyard.noop")).status_code == 201
            server.stop()
            for response in (
                await _post_job(api, task="jobyard.noop"),
                await api.get("/v1/jobs/anything"),
                await api.get("/v1/queues"),
                await api.post(
                    "/v1/jobs", json={"task": "jobyard.noop"}, headers={"Idempotency-Key": "k"}
                ),
            ):
                assert response.status_code == 503, response.text
                assert response.headers["content-type"] == PROBLEM
                assert response.json()["title"] == "Redis unreachable"
                assert response.json()["detail"].startswith("the job store (Redis) did not answer")
                assert response.headers["retry-after"] == "5"
            ready = await api.get("/readyz")
            assert ready.status_code == 503
            assert ready.json()["title"] == "Redis unreachable"
            assert ready.json()["detail"].startswith("Redis did not answer PING within 1 s")
            assert (await api.get("/healthz")).json() == {"status": "ok"}
    finally:
        server.stop()


async def test_readyz_times_out_when_redis_hangs(config_path: Path) -> None:
    import signal

    server = RedisProcess().start()
    try:
        async with api_client(make_runtime(server.url, config_path)) as api:
            assert (await api.get("/readyz")).status_code == 200
            assert server.proc is not None
            server.proc.send_signal(signal.SIGSTOP)
            try:
                ready = await api.get("/readyz")
            finally:
                server.proc.send_signal(signal.SIGCONT)
            assert ready.status_code == 503
            assert ready.json()["detail"].startswith("Redis did not answer PING within 1 s")
    finally:
        server.stop()


NASTY_BODIES: list[object] = [
    None,
    0,
    "",
    [],
    {},
    {"task": None},
    {"task": 5},
    {"task": "\ud800"},
    {"task": "no.such.task"},
    {"task": "jobyard.noop", "args": None},
    {"task": "jobyard.noop", "args": {"a": "\ud800"}},
    {"task": "tests.record_effect", "args": {"path": "\ud800\x00"}},
    {"task": "jobyard.noop", "priority": 1e308},
    {"task": "jobyard.noop", "priority": True},
    {"task": "jobyard.noop", "delay_s": 1e308},
    {"task": "jobyard.noop", "eta": "9999-12-31T23:59:59Z"},
    {"task": "jobyard.noop", "eta": "0001-01-01T00:00:00+14:00"},
    {"task": "jobyard.noop", "eta": 1e20},
    {"task": "jobyard.noop", "queue": "\x00"},
    {"task": "x" * 100_000},
    {"jobs": None},
    {"jobs": [None]},
    {"type": "chain", "jobs": [{"task": "jobyard.noop"}] * 101},
    {"type": "dag", "jobs": [{"task": "jobyard.noop"}]},
]
RAW_BODIES: list[bytes] = [
    b"",
    b"\xff\xfe",
    b"[" * 5000,
    b'{"task": "jobyard.noop", "delay_s": NaN}',
    b'{"task": "jobyard.noop", "delay_s": Infinity}',
    b'{"task": "jobyard.noop", "priority": 99999999999999999999999999999999}',
]


async def test_no_input_gives_a_500(api: httpx.AsyncClient) -> None:
    statuses: dict[str, set[int]] = {}
    for path in ("/v1/jobs", "/v1/jobs:batch", "/v1/workflows"):
        for body in NASTY_BODIES:
            r = await api.post(
                path,
                content=json.dumps(body).encode(),
                headers={"content-type": "application/json"},
            )
            statuses.setdefault(path, set()).add(r.status_code)
            assert r.status_code < 500, (path, body, r.text)
            json.loads(r.content)  # always valid JSON
        for raw in RAW_BODIES:
            r = await api.post(path, content=raw, headers={"content-type": "application/json"})
            assert r.status_code < 500, (path, raw[:40], r.text)
    for path in (
        "/v1/jobs/%00",
        "/v1/jobs/%ff%fe",
        "/v1/jobs/" + "a" * 300,
        "/v1/jobs?limit=1e99",
        "/v1/jobs?state=%00",
        "/v1/queues/%ff",
        "/v1/workflows/x",
        "/v1/dead-letters?limit=-1",
        "/v1/dead-letters?queue=%ff",
    ):
        r = await api.get(path)
        assert r.status_code < 500, (path, r.text)
        assert r.headers["content-type"] == PROBLEM, path
    r = await api.post("/v1/jobs", json={"task": "jobyard.noop"}, headers={"content-length": "x"})
    assert r.status_code < 500
    # Odd characters sent are echoed back as valid JSON (a lone surrogate is refused).
    odd = {"task": "tests.record_effect\ud800", "args": {"path": "\ud800"}}
    refused = await api.post(
        "/v1/jobs", content=json.dumps(odd).encode(), headers={"content-type": "application/json"}
    )
    assert refused.status_code == 422
    assert {e["field"] for e in refused.json()["errors"]} == {"task", "args.path"}
    assert statuses["/v1/jobs"] >= {201, 404, 422}
