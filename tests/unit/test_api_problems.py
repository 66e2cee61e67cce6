"""Field naming in problem documents, and request fingerprints."""

from __future__ import annotations

import json
from typing import Any

import pytest
from pydantic import BaseModel, ConfigDict, ValidationError

from jobyard.api.problems import (
    AsciiJSONResponse,
    FieldError,
    enqueue_field_errors,
    invalid_input,
    loc_to_field,
    problem_response,
)
from jobyard.api.schemas import JobIn
from jobyard.core.enqueue import EnqueueError
from jobyard.core.errors import UnknownQueueError, UnknownTaskError


class Args(BaseModel):
    model_config = ConfigDict(extra="forbid")
    url: str
    retries: int


def _args_error(raw: dict[str, object]) -> ValidationError:
    with pytest.raises(ValidationError) as info:
        Args.model_validate(raw)
    return info.value


@pytest.mark.parametrize(
    ("loc", "field"),
    [
        (("jobs", 3, "args", "url"), "jobs[3].args.url"),
        (("priority",), "priority"),
        ((0, "x"), "[0].x"),
        ((), ""),
    ],
)
def test_loc_to_field(loc: tuple[int | str, ...], field: str) -> None:
    assert loc_to_field(loc) == field


def test_enqueue_errors_are_named_under_the_member() -> None:
    exc = _args_error({"retries": "x", "colour": 1})
    assert enqueue_field_errors(exc, "jobs[2]") == [
        FieldError(field="jobs[2].args.url", message="Field required"),
        FieldError(
            field="jobs[2].args.retries",
            message="Input should be a valid integer, unable to parse string as an integer",
        ),
        FieldError(field="jobs[2].args.colour", message="unknown field (check its spelling)"),
    ]
    assert enqueue_field_errors(UnknownTaskError("a.b", ["c.d"])) == [
        FieldError(field="task", message="unknown task 'a.b'; registered tasks: c.d")
    ]
    assert enqueue_field_errors(UnknownQueueError("q", ["default"]), "jobs[0]") == [
        FieldError(field="jobs[0].queue", message="unknown queue 'q'; configured queues: default")
    ]
    assert enqueue_field_errors(EnqueueError("eta", "too far")) == [
        FieldError(field="eta", message="too far")
    ]
    with pytest.raises(TypeError):
        enqueue_field_errors(RuntimeError("x"))


def test_invalid_input_detail_lists_every_field_and_is_bounded() -> None:
    problem = invalid_input(
        [FieldError(field="a", message="x"), FieldError(field="b", message="y")]
    )
    assert (problem.status, problem.detail) == (422, "a: x; b: y")
    long = invalid_input([FieldError(field=f"f{i}", message="m" * 50) for i in range(50)])
    assert len(long.detail) == 1000
    assert long.detail.endswith("...")


def test_problem_response_is_ascii_problem_json() -> None:
    response = problem_response(404, "job-not-found", "Job not found", "no job '\u00e9\ud800'")
    assert response.media_type == "application/problem+json"
    assert response.body == (
        b'{"type":"urn:jobyard:problem:job-not-found","title":"Job not found","status":404,'
        b'"detail":"no job \'\\u00e9\\ud800\'"}'
    )


def test_fingerprint_follows_content_not_key_order() -> None:
    a = JobIn.model_validate({"task": "t.x", "args": {"a": 1, "b": [1, 2]}, "priority": 3})
    b = JobIn.model_validate({"priority": 3, "args": {"b": [1, 2], "a": 1}, "task": "t.x"})
    c = JobIn.model_validate({"task": "t.x", "args": {"a": 1, "b": [1, 2]}, "priority": 4})
    assert a.fingerprint() == b.fingerprint()
    assert a.fingerprint() != c.fingerprint()
    assert len(a.fingerprint()) == 64


@pytest.mark.parametrize(
    "content",
    [
        {"id": "j1", "n": 3, "ok": True, "none": None, "x": 0.25, "list": [1, "a"]},
        {"text": "héllo €", "emoji": "\U0001f600"},  # escaped, never sent raw
        {"lone": "\ud800"},  # not encodable as UTF-8 at all
        {"big": 2**70},  # beyond orjson's 64-bit integers
        {1: "non-string key"},
    ],
)
def test_ascii_json_is_ascii_and_means_what_json_means(content: Any) -> None:
    body = AsciiJSONResponse(content).body
    assert body.isascii()
    expected = json.loads(json.dumps(content, ensure_ascii=True))
    assert json.loads(body) == expected
