"""A small typed HTTP client for the jobyard API (what the client commands use).

Every failure is one of two exceptions: :class:`ApiError` (the API answered with an error,
usually `application/problem+json`) or :class:`ApiUnreachableError` (no answer at all).
"""

from __future__ import annotations

from types import TracebackType
from typing import Any, TypeVar
from urllib.parse import quote

import httpx
from pydantic import BaseModel, Field, ValidationError

from jobyard import __version__
from jobyard.core.records import JobRecord

M = TypeVar("M", bound=BaseModel)


class FieldProblem(BaseModel):
    """One entry of a problem's `errors`: which input was wrong and why."""

    field: str = ""
    message: str = ""


class ApiError(Exception):
    """The API answered with an error status."""

    def __init__(
        self,
        status: int,
        title: str,
        detail: str,
        errors: list[FieldProblem] | None = None,
    ) -> None:
        self.status = status
        self.title = title
        self.detail = detail
        self.errors = errors or []
        super().__init__(f"{title} ({status}): {detail}" if detail else f"{title} ({status})")


class ApiUnreachableError(Exception):
    """No HTTP answer from the API (refused, timed out, bad address)."""

    def __init__(self, url: str, reason: str) -> None:
        self.url = url
        self.reason = reason
        super().__init__(
            f"cannot reach the jobyard API at {url}: {reason} "
            "(is `jobyard api` running? set JOBYARD_API_URL)"
        )


class QueueStats(BaseModel):
    """A queue as `GET /v1/queues` shows it."""

    name: str
    depth: int
    depth_by_priority: dict[str, int] = Field(default_factory=dict)
    oldest_job_age_s: float | None = None
    in_progress: int = 0
    workers: int = 0
    dead_letters: int = 0


class RetriedCount(BaseModel):
    """What `POST /v1/dead-letters:retry` did."""

    retried: int
    skipped: int = 0
    """Dead letters left in place (their task or queue no longer exists)."""


class JobyardClient:
    """Blocking client for the `/v1` API.

    `base_url` is the API root (`http://127.0.0.1:8000`); `token` is sent as a bearer token.
    Use as a context manager, or call :meth:`close`.
    """

    def __init__(
        self,
        base_url: str,
        token: str | None = None,
        *,
        timeout_s: float = 10.0,
        transport: httpx.BaseTransport | None = None,
    ) -> None:
        self.base_url = base_url.rstrip("/")
        headers = {"User-Agent": f"jobyard-cli/{__version__}", "Accept": "application/json"}
        if token:
            headers["Authorization"] = f"Bearer {token}"
        self._http = httpx.Client(
            base_url=self.base_url, headers=headers, timeout=timeout_s, transport=transport
        )

    def __enter__(self) -> JobyardClient:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    def close(self) -> None:
        self._http.close()

    # jobs

    def enqueue(
        self,
        task: str,
        args: dict[str, Any] | None = None,
        *,
        queue: str | None = None,
        priority: int | None = None,
        delay_s: float | None = None,
        idempotency_key: str | None = None,
    ) -> JobRecord:
        """`POST /v1/jobs`; an idempotency replay returns the existing job."""
        body: dict[str, Any] = {"task": task, "args": args or {}}
        if queue is not None:
            body["queue"] = queue
        if priority is not None:
            body["priority"] = priority
        if delay_s is not None:
            body["delay_s"] = delay_s
        headers = {"Idempotency-Key": idempotency_key} if idempotency_key else None
        return _job(self._request("POST", "/v1/jobs", json=body, headers=headers))

    def get_job(self, job_id: str) -> JobRecord:
        """`GET /v1/jobs/{id}`."""
        return _job(self._request("GET", f"/v1/jobs/{_seg(job_id)}"))

    # queues

    def queues(self) -> list[QueueStats]:
        """`GET /v1/queues`."""
        data = self._request("GET", "/v1/queues")
        return [_model(QueueStats, q) for q in _list_field(data, "queues")]

    def queue(self, name: str) -> QueueStats:
        """`GET /v1/queues/{name}`."""
        return _model(QueueStats, self._request("GET", f"/v1/queues/{_seg(name)}"))

    # dead letters

    def dead_letters(self, queue: str | None = None, limit: int | None = None) -> list[JobRecord]:
        """`GET /v1/dead-letters`: dead jobs, optionally of one queue."""
        params: dict[str, str | int] = {}
        if queue is not None:
            params["queue"] = queue
        if limit is not None:
            params["limit"] = limit
        data = self._request("GET", "/v1/dead-letters", params=params)
        return [_job(j) for j in _list_field(data, "dead_letters")]

    def retry_dead_letter(self, job_id: str) -> JobRecord:
        """`POST /v1/dead-letters/{id}/retry`: the job, queued again."""
        return _job(self._request("POST", f"/v1/dead-letters/{_seg(job_id)}/retry"))

    def delete_dead_letter(self, job_id: str) -> None:
        """`DELETE /v1/dead-letters/{id}`."""
        self._request("DELETE", f"/v1/dead-letters/{_seg(job_id)}")

    def retry_dead_letters(self, queue: str) -> RetriedCount:
        """`POST /v1/dead-letters:retry?queue=Q`: how many were queued again (and skipped)."""
        data = self._request("POST", "/v1/dead-letters:retry", params={"queue": queue})
        return _model(RetriedCount, data)

    def purge_dead_letters(self, queue: str) -> int:
        """`DELETE /v1/dead-letters?queue=Q`: how many were deleted."""
        data = self._request("DELETE", "/v1/dead-letters", params={"queue": queue})
        return _int_field(data, "purged")

    # plumbing

    def _request(
        self,
        method: str,
        path: str,
        *,
        json: Any = None,
        params: dict[str, str | int] | None = None,
        headers: dict[str, str] | None = None,
    ) -> Any:
        try:
            response = self._http.request(method, path, json=json, params=params, headers=headers)
        except httpx.TimeoutException as exc:
            raise ApiUnreachableError(
                self.base_url, f"no answer in time ({type(exc).__name__})"
            ) from exc
        except httpx.TransportError as exc:
            raise ApiUnreachableError(self.base_url, str(exc) or type(exc).__name__) from exc
        if response.status_code >= 400:
            raise problem_from_response(response)
        if response.status_code == 204 or not response.content:
            return None
        try:
            return response.json()
        except ValueError as exc:
            raise ApiError(
                response.status_code,
                "Invalid response",
                f"{method} {path} did not answer JSON: {response.text[:200]!r}",
            ) from exc


def problem_from_response(response: httpx.Response) -> ApiError:
    """An :class:`ApiError` from an error response (problem+json, FastAPI's or plain text)."""
    status = response.status_code
    title = response.reason_phrase or "HTTP error"
    try:
        body = response.json()
    except ValueError:
        text = response.text.strip()
        return ApiError(status, title, text[:300])
    if not isinstance(body, dict):
        return ApiError(status, title, str(body)[:300])
    raw_detail = body.get("detail")
    errors = [_field_problem(e) for e in body.get("errors") or [] if isinstance(e, dict)]
    if isinstance(raw_detail, list):
        # FastAPI's default validation error: detail is the list of field errors.
        errors += [_field_problem(e) for e in raw_detail if isinstance(e, dict)]
        raw_detail = "invalid request"
    return ApiError(
        int(body.get("status") or status),
        str(body.get("title") or title),
        "" if raw_detail is None else str(raw_detail),
        errors,
    )


def _field_problem(entry: dict[str, Any]) -> FieldProblem:
    field = entry.get("field")
    if field is None and isinstance(entry.get("loc"), list):
        field = ".".join(str(p) for p in entry["loc"])
    return FieldProblem(
        field=str(field or ""), message=str(entry.get("message") or entry.get("msg") or "")
    )


def _seg(value: str) -> str:
    return quote(value, safe="")


def _model(model: type[M], data: Any) -> M:
    try:
        return model.model_validate(data)
    except ValidationError as exc:
        raise ApiError(200, "Invalid response", f"unexpected {model.__name__}: {exc}") from exc


def _job(data: Any) -> JobRecord:
    return _model(JobRecord, data)


def _list_field(data: Any, name: str) -> list[Any]:
    value = data.get(name) if isinstance(data, dict) else None
    if not isinstance(value, list):
        raise ApiError(200, "Invalid response", f"expected a {name!r} list, got {data!r:.200}")
    return value


def _int_field(data: Any, name: str) -> int:
    value = data.get(name) if isinstance(data, dict) else None
    if not isinstance(value, int):
        raise ApiError(200, "Invalid response", f"expected an integer {name!r}, got {data!r:.200}")
    return value
