"""Input that would be accepted and then fail at run time is refused at enqueue (issue 11.10):
a lone surrogate, an integer too long for Python's parser, a boolean priority, a repeated
`Idempotency-Key`. Each gets a 422 problem naming the field, on every enqueue endpoint."""

from __future__ import annotations

import httpx
import pytest
import redis

pytestmark = [pytest.mark.integration, pytest.mark.anyio]

PROBLEM = "application/problem+json"
JSON = {"content-type": "application/json"}


def _errors(r: httpx.Response) -> list[dict[str, str]]:
    assert r.status_code == 422, r.text
    assert r.headers["content-type"] == PROBLEM
    errors: list[dict[str, str]] = r.json()["errors"]
    return errors


async def test_lone_surrogate_in_args_is_422_naming_its_path(
    api: httpx.AsyncClient, redis_client: redis.Redis
) -> None:
    # As a client sends it: the JSON escape of a lone surrogate (valid JSON syntax).
    body = b'{"task": "tests.record_effect", "args": {"path": "a\\ud800b"}}'
    (error,) = _errors(await api.post("/v1/jobs", content=body, headers=JSON))
    assert error["field"] == "args.path"
    assert "surrogate" in error["message"]
    batch = (
        b'{"jobs": [{"task": "jobyard.noop"}, '
        b'{"task": "tests.record_effect", "args": {"path": "\\udfff"}}]}'
    )
    (error,) = _errors(await api.post("/v1/jobs:batch", content=batch, headers=JSON))
    assert error["field"] == "jobs[1].args.path"
    member = b'{"task": "tests.record_effect", "args": {"path": "\\ud83d"}}'
    workflow = b'{"type": "chain", "jobs": [' + member + b"]}"
    (error,) = _errors(await api.post("/v1/workflows", content=workflow, headers=JSON))
    assert error["field"] == "jobs[0].args.path"
    # A surrogate pair is a real character and is accepted.
    pair = b'{"task": "tests.record_effect", "args": {"path": "\\ud83d\\ude00"}}'
    r = await api.post("/v1/jobs", content=pair, headers=JSON)
    assert r.status_code == 201, r.text
    assert r.json()["args"]["path"] == "\U0001f600"
    assert redis_client.zcard("jobyard:recent") == 1


async def test_lone_surrogate_in_a_key_or_nested_value_is_refused(api: httpx.AsyncClient) -> None:
    body = b'{"task": "tests.record_effect", "args": {"path": "x", "\\ud800": 1}}'
    (error,) = _errors(await api.post("/v1/jobs", content=body, headers=JSON))
    assert error["field"] == "args"
    assert "surrogate" in error["message"]


async def test_integer_over_4300_digits_is_422_naming_the_field(
    api: httpx.AsyncClient, redis_client: redis.Redis
) -> None:
    huge = b"9" * 5000
    body = b'{"task": "tests.flaky", "args": {"failures": ' + huge + b"}}"
    (error,) = _errors(await api.post("/v1/jobs", content=body, headers=JSON))
    assert error["field"] == "args.failures"
    assert "4300 digits" in error["message"]
    batch = b'{"jobs": [{"task": "tests.flaky"}, {"task": "tests.flaky", "priority": -' + huge
    batch += b"}]}"
    (error,) = _errors(await api.post("/v1/jobs:batch", content=batch, headers=JSON))
    assert error["field"] == "jobs[1].priority"
    nested = b'{"task": "tests.flaky", "args": {"x": [1, {"y": ' + huge + b"}]}}"
    (error,) = _errors(await api.post("/v1/jobs", content=nested, headers=JSON))
    assert error["field"] == "args.x[1].y"
    assert redis_client.dbsize() == 0


@pytest.mark.parametrize("value", ["true", "false", "1.0", '"1"'])
async def test_priority_must_be_an_integer_not_a_boolean(
    api: httpx.AsyncClient, redis_client: redis.Redis, value: str
) -> None:
    body = b'{"task": "jobyard.noop", "priority": ' + value.encode() + b"}"
    (error,) = _errors(await api.post("/v1/jobs", content=body, headers=JSON))
    assert error["field"] == "priority"
    batch = b'{"jobs": [{"task": "jobyard.noop", "priority": ' + value.encode() + b"}]}"
    (error,) = _errors(await api.post("/v1/jobs:batch", content=batch, headers=JSON))
    assert error["field"] == "jobs[0].priority"
    assert redis_client.dbsize() == 0
    r = await api.post("/v1/jobs", json={"task": "jobyard.noop", "priority": 1})
    assert r.status_code == 201, r.text


async def test_two_idempotency_key_headers_are_422(
    api: httpx.AsyncClient, redis_client: redis.Redis
) -> None:
    headers = [("Idempotency-Key", "first"), ("Idempotency-Key", "second")]
    r = await api.post("/v1/jobs", json={"task": "jobyard.noop"}, headers=headers)
    (error,) = _errors(r)
    assert error["field"] == "Idempotency-Key"
    assert "once" in error["message"]
    # Even when both carry the same value.
    same = [("Idempotency-Key", "k"), ("idempotency-key", "k")]
    (error,) = _errors(await api.post("/v1/jobs", json={"task": "jobyard.noop"}, headers=same))
    assert error["field"] == "Idempotency-Key"
    assert redis_client.dbsize() == 0
    r = await api.post("/v1/jobs", json={"task": "jobyard.noop"}, headers={"Idempotency-Key": "k"})
    assert r.status_code == 201, r.text
