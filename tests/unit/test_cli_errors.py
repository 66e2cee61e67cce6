"""How API error responses become the messages client commands print."""

from __future__ import annotations

from typing import Any

import httpx

from jobyard.cli import describe_api_error
from jobyard.client import FieldProblem, problem_from_response


def response(status: int, **kwargs: Any) -> httpx.Response:
    return httpx.Response(status, request=httpx.Request("GET", "http://api/v1/x"), **kwargs)


def test_problem_json_detail_and_field_errors() -> None:
    err = problem_from_response(
        response(
            422,
            headers={"content-type": "application/problem+json"},
            json={
                "type": "urn:jobyard:problem:invalid-request",
                "title": "Invalid arguments",
                "status": 422,
                "detail": "args.count: Input should be a valid integer; args.name: Field required",
                "errors": [
                    {"field": "args.count", "message": "Input should be a valid integer"},
                    {"field": "args.name", "message": "Field required"},
                ],
            },
        )
    )
    assert (err.status, err.title) == (422, "Invalid arguments")
    assert err.errors == [
        FieldProblem(field="args.count", message="Input should be a valid integer"),
        FieldProblem(field="args.name", message="Field required"),
    ]
    # The detail only repeats the fields: they are listed one per line.
    assert describe_api_error(err) == (
        "Invalid arguments (422):\n"
        "  - args.count: Input should be a valid integer\n"
        "  - args.name: Field required"
    )


def test_field_errors_the_detail_does_not_mention_are_added() -> None:
    err = problem_from_response(
        response(
            409,
            json={
                "title": "Conflict",
                "status": 409,
                "detail": "job abc is not a dead letter",
                "errors": [{"field": "job_id", "message": "state is succeeded"}],
            },
        )
    )
    assert describe_api_error(err) == (
        "Conflict (409): job abc is not a dead letter\n  - job_id: state is succeeded"
    )


def test_fastapi_default_validation_shape() -> None:
    err = problem_from_response(
        response(
            422,
            json={"detail": [{"loc": ["query", "limit"], "msg": "too big", "type": "x"}]},
        )
    )
    assert err.detail == "invalid request"
    assert err.errors == [FieldProblem(field="query.limit", message="too big")]
    assert describe_api_error(err) == (
        "Unprocessable Entity (422): invalid request\n  - query.limit: too big"
    )


def test_not_json_error_bodies_are_shown_cut_short() -> None:
    err = problem_from_response(response(502, text="<html>" + "x" * 500))
    assert err.status == 502
    assert err.title == "Bad Gateway"
    assert err.detail == ("<html>" + "x" * 500)[:300]


def test_unauthorized_hints_at_the_token() -> None:
    err = problem_from_response(
        response(401, json={"title": "Unauthorized", "status": 401, "detail": "a token is needed"})
    )
    assert describe_api_error(err) == (
        "Unauthorized (401): a token is needed\n  (pass --token or set JOBYARD_API_TOKEN)"
    )
