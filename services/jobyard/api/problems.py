"""Errors as RFC 9457 `application/problem+json`, and the handlers that produce them.

Every error the API returns is a :class:`Problem`: `type` (a stable URN per kind of
problem), `title`, `status`, `detail` (what was wrong and what is allowed) and, for input
errors, `errors` with one entry per offending field.
"""

from __future__ import annotations

import json
import logging
from http import HTTPStatus
from typing import Any

import orjson
import redis.exceptions
from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from pydantic import BaseModel, ValidationError
from starlette.exceptions import HTTPException as StarletteHTTPException

from jobyard.api.json_values import find_oversized_int, max_int_digits
from jobyard.core.dead_letters import CannotRetryError, NotADeadLetterError
from jobyard.core.enqueue import EnqueueError
from jobyard.core.errors import UnknownQueueError, UnknownTaskError
from jobyard.core.jobs import InvalidMembersError

log = logging.getLogger("jobyard.api")

PROBLEM_JSON = "application/problem+json"
TYPE_PREFIX = "urn:jobyard:problem:"


class FieldError(BaseModel):
    """One invalid input field."""

    field: str
    """Where: `args.url`, `jobs[3].priority`, `limit`, `Idempotency-Key`."""
    message: str


class Problem(BaseModel):
    """An RFC 9457 problem document."""

    type: str
    title: str
    status: int
    detail: str
    errors: list[FieldError] | None = None


class AsciiJSONResponse(JSONResponse):
    """JSON with non-ASCII escaped: any string a client sent (even a lone surrogate) can
    be echoed back without an encoding error."""

    def render(self, content: Any) -> bytes:
        try:
            body = orjson.dumps(content)
        except TypeError:  # a lone surrogate, say: not encodable as UTF-8
            body = b""
        if body and body.isascii():
            return body  # the same JSON as below (orjson: a batch of records 5x faster)
        return json.dumps(content, ensure_ascii=True, separators=(",", ":")).encode("ascii")


class ProblemResponse(AsciiJSONResponse):
    media_type = PROBLEM_JSON


class ProblemError(Exception):
    """Raise from a route to answer with a problem document."""

    def __init__(
        self,
        status: int,
        slug: str,
        title: str,
        detail: str,
        *,
        errors: list[FieldError] | None = None,
        headers: dict[str, str] | None = None,
    ) -> None:
        super().__init__(detail)
        self.status = status
        self.slug = slug
        self.title = title
        self.detail = detail
        self.errors = errors
        self.headers = headers

    def response(self) -> ProblemResponse:
        return problem_response(
            self.status,
            self.slug,
            self.title,
            self.detail,
            errors=self.errors,
            headers=self.headers,
        )


def problem_response(
    status: int,
    slug: str,
    title: str,
    detail: str,
    *,
    errors: list[FieldError] | None = None,
    headers: dict[str, str] | None = None,
) -> ProblemResponse:
    """A problem document response."""
    body = Problem(
        type=TYPE_PREFIX + slug, title=title, status=status, detail=detail, errors=errors
    )
    return ProblemResponse(body.model_dump(exclude_none=True), status_code=status, headers=headers)


def invalid_input(errors: list[FieldError], title: str = "Invalid request") -> ProblemError:
    """422 naming every invalid field; `detail` repeats them so it reads on its own."""
    detail = "; ".join(f"{e.field}: {e.message}" for e in errors)
    if len(detail) > 1000:
        detail = detail[:997] + "..."
    return ProblemError(422, "invalid-request", title, detail, errors=errors)


def loc_to_field(loc: tuple[int | str, ...] | list[int | str]) -> str:
    """`("jobs", 3, "args", "url")` -> `jobs[3].args.url`."""
    out = ""
    for part in loc:
        if isinstance(part, int):
            out += f"[{part}]"
        else:
            out += f".{part}" if out else str(part)
    return out


def validation_field_errors(exc: ValidationError, prefix: str) -> list[FieldError]:
    """One entry per pydantic error, located under `prefix` (e.g. `jobs[3].args`)."""
    out = []
    for err in exc.errors(include_url=False):
        sub = loc_to_field(tuple(err["loc"]))
        field = f"{prefix}.{sub}" if sub else prefix
        msg = (
            "unknown field (check its spelling)" if err["type"] == "extra_forbidden" else err["msg"]
        )
        out.append(FieldError(field=field, message=msg))
    return out


def enqueue_field_errors(exc: Exception, prefix: str = "") -> list[FieldError]:
    """The field errors of one failed `prepare` (unknown task/queue, args, priority...)."""
    at = f"{prefix}." if prefix else ""
    if isinstance(exc, ValidationError):
        return validation_field_errors(exc, f"{at}args")
    if isinstance(exc, UnknownTaskError):
        return [FieldError(field=f"{at}task", message=str(exc))]
    if isinstance(exc, UnknownQueueError):
        return [FieldError(field=f"{at}queue", message=str(exc))]
    if isinstance(exc, EnqueueError):
        return [FieldError(field=f"{at}{exc.field}", message=str(exc))]
    raise TypeError(f"not an enqueue error: {exc!r}")


_REQUEST_PARTS = frozenset({"body", "query", "path", "header", "cookie"})


def _request_field_errors(exc: RequestValidationError) -> list[FieldError]:
    out = []
    for err in exc.errors():
        loc = list(err.get("loc", ()))
        if err.get("type") == "json_invalid":
            ctx = err.get("ctx") or {}
            where = f" at position {loc[1]}" if len(loc) > 1 else ""
            out.append(
                FieldError(field="body", message=f"invalid JSON{where}: {ctx.get('error', '')}")
            )
            continue
        if len(loc) > 1 and loc[0] in _REQUEST_PARTS:
            loc = loc[1:]
        field = loc_to_field(loc) or "body"
        at = (err.get("ctx") or {}).get("at")
        if isinstance(at, str) and at:
            field += at if at.startswith("[") else f".{at}"
        msg = str(err.get("msg", "invalid"))
        if err.get("type") == "extra_forbidden":
            msg = "unknown field (check its spelling)"
        elif err.get("type") == "missing" and field == "body":
            msg = "a JSON body is required"
        out.append(FieldError(field=field, message=msg))
    return out


def _status_title(status: int) -> str:
    try:
        return HTTPStatus(status).phrase
    except ValueError:
        return "Error"


async def _problem_error(_: Request, exc: Exception) -> ProblemResponse:
    assert isinstance(exc, ProblemError)
    return exc.response()


async def _request_validation(_: Request, exc: Exception) -> ProblemResponse:
    assert isinstance(exc, RequestValidationError)
    return invalid_input(_request_field_errors(exc)).response()


_UNPARSABLE_BODY = {
    RecursionError: "invalid JSON: nested too deeply to parse",
    UnicodeDecodeError: "invalid JSON: the body is not UTF-8 text",
}
"""Why FastAPI's bare 400 "There was an error parsing the body" happened, when the JSON
parser raised something other than a JSON syntax error."""


async def _oversized_int(request: Request) -> FieldError | None:
    """The field of an integer literal too long for Python's JSON parser, if that is why
    the body could not be parsed (the parser says neither which nor where)."""
    found = find_oversized_int(await request.body())
    if found is None:
        return None
    field, digits = found
    return FieldError(
        field=field,
        message=f"integer of {digits} digits: at most {max_int_digits()} digits are accepted",
    )


async def _http_exception(request: Request, exc: Exception) -> ProblemResponse:
    assert isinstance(exc, StarletteHTTPException)
    if exc.status_code == 400 and type(exc.__cause__) in _UNPARSABLE_BODY:
        message = _UNPARSABLE_BODY[type(exc.__cause__)]
        return invalid_input([FieldError(field="body", message=message)]).response()
    if exc.status_code == 400 and type(exc.__cause__) is ValueError:
        oversized = await _oversized_int(request)
        if oversized is not None:
            return invalid_input([oversized]).response()
    title = _status_title(exc.status_code)
    detail = str(exc.detail) if exc.detail else title
    if exc.status_code == 404 and detail == "Not Found":
        detail = "no such endpoint; the API is described at /docs"
    slug = title.lower().replace(" ", "-").replace("'", "")
    return problem_response(
        exc.status_code, slug, title, detail, headers=dict(exc.headers or {}) or None
    )


async def _unknown_task(_: Request, exc: Exception) -> ProblemResponse:
    assert isinstance(exc, UnknownTaskError)
    return problem_response(
        404,
        "unknown-task",
        "Unknown task",
        str(exc),
        errors=[FieldError(field="task", message=str(exc))],
    )


async def _unknown_queue(_: Request, exc: Exception) -> ProblemResponse:
    assert isinstance(exc, UnknownQueueError)
    return problem_response(
        422,
        "unknown-queue",
        "Unknown queue",
        str(exc),
        errors=[FieldError(field="queue", message=str(exc))],
    )


async def _enqueue_error(_: Request, exc: Exception) -> ProblemResponse:
    assert isinstance(exc, EnqueueError)
    return invalid_input(enqueue_field_errors(exc)).response()


async def _member_errors(_: Request, exc: Exception) -> ProblemResponse:
    assert isinstance(exc, InvalidMembersError)
    errors = [e for index, err in exc.errors for e in enqueue_field_errors(err, f"jobs[{index}]")]
    return invalid_input(errors).response()


async def _not_a_dead_letter(_: Request, exc: Exception) -> ProblemResponse:
    assert isinstance(exc, NotADeadLetterError)
    if exc.state is None:
        return problem_response(404, "job-not-found", "Job not found", str(exc))
    return problem_response(409, "not-a-dead-letter", "Not a dead letter", str(exc))


async def _cannot_retry(_: Request, exc: Exception) -> ProblemResponse:
    return problem_response(409, "cannot-retry", "Cannot retry", str(exc))


async def _redis_unreachable(_: Request, exc: Exception) -> ProblemResponse:
    log.warning("redis unreachable: %s", exc)
    return problem_response(
        503,
        "redis-unreachable",
        "Redis unreachable",
        f"the job store (Redis) did not answer: {exc}; retry later",
        headers={"Retry-After": "5"},
    )


async def _redis_error(_: Request, exc: Exception) -> ProblemResponse:
    log.error("redis error: %s", exc)
    return problem_response(
        503, "redis-error", "Redis error", f"the job store (Redis) refused the request: {exc}"
    )


async def _unexpected(_: Request, exc: Exception) -> ProblemResponse:
    log.exception("unexpected error", exc_info=exc)
    return problem_response(
        500, "internal-error", "Internal error", "an unexpected error occurred; see the API logs"
    )


def install_problem_handlers(app: FastAPI) -> None:
    """Answer every error with a problem document."""
    app.add_exception_handler(ProblemError, _problem_error)
    app.add_exception_handler(RequestValidationError, _request_validation)
    app.add_exception_handler(StarletteHTTPException, _http_exception)
    app.add_exception_handler(UnknownTaskError, _unknown_task)
    app.add_exception_handler(UnknownQueueError, _unknown_queue)
    app.add_exception_handler(EnqueueError, _enqueue_error)
    app.add_exception_handler(InvalidMembersError, _member_errors)
    app.add_exception_handler(NotADeadLetterError, _not_a_dead_letter)
    app.add_exception_handler(CannotRetryError, _cannot_retry)
    app.add_exception_handler(redis.exceptions.ConnectionError, _redis_unreachable)
    app.add_exception_handler(redis.exceptions.TimeoutError, _redis_unreachable)
    app.add_exception_handler(redis.exceptions.RedisError, _redis_error)
    app.add_exception_handler(Exception, _unexpected)


def problem_responses(*statuses: int) -> dict[int | str, dict[str, Any]]:
    """OpenAPI entries for the problem statuses a route can answer with."""
    return {status: {"model": Problem, "description": _status_title(status)} for status in statuses}
