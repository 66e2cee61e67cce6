"""`/healthz` (the process answers) and `/readyz` (Redis answers): probes, no auth."""

from __future__ import annotations

import anyio
import redis.exceptions
from fastapi import APIRouter

from jobyard.api.deps import RedisDep
from jobyard.api.problems import ProblemError, problem_responses
from jobyard.api.schemas import Health

router = APIRouter(tags=["health"])

READY_TIMEOUT_S = 1.0


@router.get("/healthz", response_model=Health, summary="Liveness: the process answers")
async def healthz() -> Health:
    return Health()


@router.get(
    "/readyz",
    response_model=Health,
    summary="Readiness: Redis answers within 1 s",
    responses=problem_responses(503),
)
async def readyz(client: RedisDep) -> Health:
    try:
        with anyio.fail_after(READY_TIMEOUT_S):
            await client.ping()
    except (TimeoutError, redis.exceptions.RedisError) as exc:
        raise ProblemError(
            503,
            "not-ready",
            "Redis unreachable",
            f"Redis did not answer PING within {READY_TIMEOUT_S:g} s: {exc or type(exc).__name__}",
        ) from exc
    return Health()
