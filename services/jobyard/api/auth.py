"""Bearer-token authentication, which fails closed.

`JOBYARD_API_AUTH=tokens` (the default): the API does not start unless
`JOBYARD_API_TOKENS` or `JOBYARD_ADMIN_TOKENS` holds a token, and then every endpoint but
the probes (`/healthz`, `/readyz`), `/metrics` and, when `JOBYARD_API_DOCS` is on, the
API documentation needs `Authorization: Bearer <token>`. Reads take an API or an admin
token; writes (POST, DELETE) take an admin token when admin tokens are configured, else an
API token. `JOBYARD_API_AUTH=none` opens every endpoint to anyone who reaches the API: it
is refused together with tokens, and logged as a warning at start. No token: 401 with
`WWW-Authenticate: Bearer`; a wrong one: 403. Tokens are compared in constant time.

Behind the Kubernetes API server's service proxy (`kubectl jobyard`), which removes the
`Authorization` header it authenticated the operator with, the token comes in
`X-Jobyard-Token` instead (used only when `Authorization` is absent).
"""

from __future__ import annotations

import hmac
import logging
from typing import Annotated

from fastapi import Depends, Request
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from pydantic import SecretStr

from jobyard.api.problems import ProblemError
from jobyard.core.bootstrap import Runtime
from jobyard.core.errors import ConfigError
from jobyard.core.settings import Settings

log = logging.getLogger("jobyard.api")

bearer = HTTPBearer(
    auto_error=False,
    scheme_name="bearer",
    description="A token from JOBYARD_API_TOKENS (reads) or JOBYARD_ADMIN_TOKENS (writes).",
)

Credentials = Annotated[HTTPAuthorizationCredentials | None, Depends(bearer)]

PROXY_TOKEN_HEADER = "X-Jobyard-Token"  # noqa: S105 (a header name)
"""The bare token, for clients behind a proxy that consumes `Authorization`."""


def check_auth_mode(settings: Settings) -> None:
    """Refuse to serve with authentication off by accident; warn when it is off on purpose."""
    if settings.api_auth == "none":
        if settings.auth_tokens_configured:
            raise ConfigError(
                "environment: JOBYARD_API_AUTH=none, but JOBYARD_API_TOKENS or "
                "JOBYARD_ADMIN_TOKENS holds tokens: unset the tokens to run open, or set "
                "JOBYARD_API_AUTH=tokens to enforce them"
            )
        log.warning(
            "the API is open: JOBYARD_API_AUTH=none, so anyone who can reach "
            "%s:%s can read, enqueue, cancel and purge jobs without a token",
            settings.api_host,
            settings.api_port,
        )
        return
    if not settings.auth_tokens_configured:
        raise ConfigError(
            "environment: JOBYARD_API_TOKENS and JOBYARD_ADMIN_TOKENS are both unset, so "
            "the API would be open: set tokens (e.g. JOBYARD_ADMIN_TOKENS=$(openssl rand -hex "
            "32)), or set JOBYARD_API_AUTH=none to run it open on purpose"
        )


def _open(settings: Settings) -> bool:
    return settings.api_auth == "none" and not settings.auth_tokens_configured


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
    """Pass with an API or admin token (or when the API runs open on purpose)."""
    settings = _runtime(request).settings
    if _open(settings):
        return
    token = _token(request, credentials)
    if token_in(token, settings.api_tokens) | token_in(token, settings.admin_tokens):
        return
    raise _forbidden("the bearer token is not valid")


async def require_write(request: Request, credentials: Credentials) -> None:
    """With admin tokens configured, pass only an admin token; else as `require_read`."""
    settings = _runtime(request).settings
    if _open(settings) or not settings.admin_tokens:
        await require_read(request, credentials)
        return
    token = _token(request, credentials)
    if token_in(token, settings.admin_tokens):
        return
    if token_in(token, settings.api_tokens):
        raise _forbidden("this endpoint changes state and needs an admin token")
    raise _forbidden("the bearer token is not valid")
