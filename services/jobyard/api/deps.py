"""Dependencies as `Annotated` aliases, so a route's signature reads like its spec.

Everything here comes from `app.state`, filled by the lifespan (`jobyard.api.app`).
They are `async def` although they never await: FastAPI runs a plain `def` dependency in
its thread pool, a thread hop per dependency per request (a third of an enqueue's CPU).
"""

from __future__ import annotations

from typing import Annotated, Any, cast

import redis.asyncio
from celery import Celery
from fastapi import Depends, Request

from jobyard.api.auth import require_read, require_write
from jobyard.core.bootstrap import Runtime


async def get_runtime(request: Request) -> Runtime:
    """Settings, config and registry of this API process."""
    return cast(Runtime, request.app.state.runtime)


async def get_redis(request: Request) -> redis.asyncio.Redis:
    """The process's asyncio Redis client."""
    return cast(redis.asyncio.Redis, request.app.state.redis)


async def get_celery(request: Request) -> Any:
    """The Celery app, used only to build messages and canvas (never to publish)."""
    return request.app.state.celery


RuntimeDep = Annotated[Runtime, Depends(get_runtime)]
RedisDep = Annotated[redis.asyncio.Redis, Depends(get_redis)]
CeleryDep = Annotated[Celery, Depends(get_celery)]
ReadAuth = Annotated[None, Depends(require_read)]
"""A valid API (or admin) token, when tokens are configured."""
WriteAuth = Annotated[None, Depends(require_write)]
"""An admin token when admin tokens are configured, else as `ReadAuth`."""
