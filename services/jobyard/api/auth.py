"""Bearer-token authentication.

When `JOBYARD_API_TOKENS` is set, every endpoint but health, metrics and docs needs
`Authorization: Bearer <token>`; when `JOBYARD_ADMIN_TOKENS` is set, write endpoints
(POST, DELETE) need one of those (an admin token passes read checks too). No token: 401
with `WWW-Authenticate: Bearer`; a wrong one: 403. Tokens are compared in constant time.

Behind the Kubernetes API server's service proxy (`kubectl jobyard`), which removes the
`Authorization` header it authenticated the operator with, the token comes in
`X-Jobyard-Token` instead (used only when `Authorization` is absent).
"""

from __future__ import annotations

import hmac
from typing import Annotated

from fastapi import Depends, Request
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from pydantic import SecretStr

from jobyard.api.problems import ProblemError
from jobyard.core.bootstrap import Runtime

bearer = HTTPBearer(
    auto_error=False,
    scheme_name="bearer",
    description="A token from JOBYARD_API_TOKENS (reads) or JOBYARD_ADMIN_TOKENS (writes).",
)

Credentials = Annotated[HTTPAuthorizationCredentials | None, Depends(bearer)]

PROXY_TOKEN_HEADER = "X-Jobyard-Token"  # noqa: S105 (a header name)
"""The bare token, for clients behind a proxy that consumes `Authorization`."""


def _runtime(request: Request) -> Runtime:
    runtime: Runtime = request.app.state.runtime
    return runtime


def token_in(token: str, allowed: list[SecretStr]) -> bool:
    """Whether `token` is one of `allowed`, comparing every candidate in constant time."""
    given = token.encode("utf-8")
    found = False
    for candidate in allowed:
        found |= hmac.compare_digest(given, candidate.get_secret_value().encode("utf-8"))
    return found


def _token(request: Request, credentials: HTTPAuthorizationCredentials | None) -> str:
    if credentials is None:
        proxied = request.headers.get(PROXY_TOKEN_HEADER, "").strip()
        if proxied:
            return proxied
        raise ProblemError(
            401,
            "unauthenticated",
            "Authentication required",
            "send 'Authorization: Bearer <token>' with a configured API token",
            headers={"WWW-Authenticate": "Bearer"},
        )
    return credentials.credentials


def _forbidden(detail: str) -> ProblemError:
    return ProblemError(403, "forbidden", "Forbidden", detail)


async def require_read(request: Request, credentials: Credentials) -> None:
    """Pass when no API tokens are configured, or with an API or admin token."""
    settings = _runtime(request).settings
    if not settings.api_tokens:
        return
    token = _token(request, credentials)
    if token_in(token, settings.api_tokens) | token_in(token, settings.admin_tokens):
        return
    raise _forbidden("the bearer token is not valid")


async def require_write(request: Request, credentials: Credentials) -> None:
    """With admin tokens configured, pass only an admin token; else as `require_read`."""
    settings = _runtime(request).settings
    if not settings.admin_tokens:
        await require_read(request, credentials)
        return
    token = _token(request, credentials)
    if token_in(token, settings.admin_tokens):
        return
    if token_in(token, settings.api_tokens):
        raise _forbidden("this endpoint changes state and needs an admin token")
    raise _forbidden("the bearer token is not valid")
