"""`/v1/queues`: depth, oldest waiting job, running jobs, live workers, dead letters."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Path

from jobyard.api.deps import ReadAuth, RedisDep, RuntimeDep
from jobyard.api.problems import ProblemError, problem_responses
from jobyard.api.schemas import QueueList
from jobyard.core.queues import QueueStats, parse_queue_stats, plan_queue_stats
from jobyard.core.store import now_s

router = APIRouter(prefix="/v1", tags=["queues"])


@router.get(
    "/queues",
    response_model=QueueList,
    summary="List queues with their statistics",
    description="Every configured queue, measured in one Redis round trip. `depth` counts "
    "every priority list of the queue.",
    responses=problem_responses(401, 403, 503),
)
async def list_queues(runtime: RuntimeDep, client: RedisDep, _auth: ReadAuth) -> QueueList:
    pipe = client.pipeline(transaction=False)
    plan = plan_queue_stats(pipe, runtime.config, runtime.settings, now=now_s())
    return QueueList(queues=parse_queue_stats(plan, await pipe.execute()))


@router.get(
    "/queues/{name}",
    response_model=QueueStats,
    summary="Get one queue's statistics",
    responses=problem_responses(401, 403, 404, 422, 503),
)
async def get_queue(
    name: Annotated[str, Path(max_length=100, description="A configured queue.")],
    runtime: RuntimeDep,
    client: RedisDep,
    _auth: ReadAuth,
) -> QueueStats:
    try:
        queue = runtime.config.queue(name)
    except KeyError:
        raise ProblemError(
            404,
            "unknown-queue",
            "Unknown queue",
            f"unknown queue {name!r}; configured queues: {', '.join(runtime.config.queue_names)}",
        ) from None
    pipe = client.pipeline(transaction=False)
    plan = plan_queue_stats(pipe, runtime.config, runtime.settings, now=now_s(), queues=[queue])
    return parse_queue_stats(plan, await pipe.execute())[0]
