"""The FastAPI app factory and its lifespan.

Settings, config, registry and clients are built in the lifespan, never at import, so
tests pass their own :class:`~jobyard.core.bootstrap.Runtime`. Routers and middleware are
added in :func:`create_app`, one line each.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from typing import Any

from fastapi import FastAPI

from jobyard import __version__
from jobyard.api.auth import check_auth_mode
from jobyard.api.body_limit import BodySizeLimit
from jobyard.api.problems import PROBLEM_JSON, AsciiJSONResponse, install_problem_handlers
from jobyard.api.routers import api_router
from jobyard.core.bootstrap import Runtime, bootstrap
from jobyard.core.celery_app import create_celery
from jobyard.core.redis import async_client
from jobyard.observability.http import HttpMetricsMiddleware, instrument_tracing, metrics_router

TAGS = [
    {"name": "jobs", "description": "Enqueue, read, list and cancel jobs."},
    {"name": "workflows", "description": "Chains and groups of jobs."},
    {"name": "queues", "description": "Depth, oldest job, running jobs and workers."},
    {"name": "tasks", "description": "Registered job types and their argument schemas."},
    {"name": "schedules", "description": "Periodic jobs sent by beat."},
    {"name": "dead letters", "description": "Jobs that failed their last attempt."},
    {"name": "health", "description": "Probes (no authentication)."},
]

DESCRIPTION = """Background jobs on Celery and Redis.

Errors are `application/problem+json` (RFC 9457). When tokens are configured, send
`Authorization: Bearer <token>`; write endpoints may need an admin token.
"""


def _lifespan(runtime: Runtime | None) -> Callable[[FastAPI], Any]:
    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        rt = runtime if runtime is not None else bootstrap()
        if runtime is None:
            check_auth_mode(rt.settings)
        client = async_client(rt.settings.redis_url)
        app.state.runtime = rt
        app.state.redis = client
        app.state.celery = create_celery(rt.settings, rt.config, rt.registry)
        try:
            yield
        finally:
            await client.aclose()

    return lifespan


def create_app(runtime: Runtime | None = None) -> FastAPI:
    """The API app; `runtime=None` bootstraps from the environment in the lifespan.

    Raises :class:`~jobyard.core.errors.ConfigError` when authentication would be off by
    accident (see :func:`jobyard.api.auth.check_auth_mode`).
    """
    if runtime is not None:
        check_auth_mode(runtime.settings)
    app = FastAPI(
        title="jobyard",
        version=__version__,
        description=DESCRIPTION,
        openapi_tags=TAGS,
        lifespan=_lifespan(runtime),
        default_response_class=AsciiJSONResponse,
        docs_url=None,  # served by routers.docs, behind JOBYARD_API_DOCS
        redoc_url=None,
        openapi_url=None,
    )
    install_problem_handlers(app)
    app.add_middleware(BodySizeLimit)
    app.add_middleware(HttpMetricsMiddleware)
    app.include_router(api_router)
    app.include_router(metrics_router())
    instrument_tracing(app)
    _problem_media_type_in_openapi(app)
    return app


def _problem_media_type_in_openapi(app: FastAPI) -> None:
    """Document error responses as `application/problem+json`, as they are sent."""
    build = app.openapi

    def openapi() -> dict[str, Any]:
        if app.openapi_schema is not None:
            return app.openapi_schema
        schema = build()
        for path in schema.get("paths", {}).values():
            for operation in path.values():
                for status, response in operation.get("responses", {}).items():
                    content = response.get("content", {})
                    if status[:1] in ("4", "5") and "application/json" in content:
                        content[PROBLEM_JSON] = content.pop("application/json")
        app.openapi_schema = schema
        return schema

    app.openapi = openapi  # type: ignore[method-assign]
