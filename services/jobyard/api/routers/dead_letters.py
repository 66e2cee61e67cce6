"""`/v1/dead-letters`: jobs that failed their last attempt; list, retry, purge."""

from __future__ import annotations

from typing import Annotated

from celery import Celery
from fastapi import APIRouter, Path, Query, Response

from jobyard.api.deps import CeleryDep, ReadAuth, RedisDep, RuntimeDep, WriteAuth
from jobyard.api.problems import problem_responses
from jobyard.api.schemas import DeadLetterList, PurgedCount, RetriedCount
from jobyard.core import dead_letters
from jobyard.core.bootstrap import Runtime
from jobyard.core.errors import UnknownQueueError
from jobyard.core.records import JobRecord
from jobyard.core.store import now_s

router = APIRouter(prefix="/v1", tags=["dead letters"])

JobId = Annotated[str, Path(min_length=1, max_length=200, description="The dead job's id.")]
RequiredQueue = Annotated[str, Query(max_length=100, description="A configured queue.")]


def _check_queue(runtime: Runtime, queue: str) -> None:
    if queue not in runtime.config.queue_names:
        raise UnknownQueueError(queue, runtime.config.queue_names)


def _context(runtime: Runtime, celery: Celery) -> dead_letters.RetryContext:
    return dead_letters.RetryContext(celery, runtime.config, runtime.registry)


@router.get(
    "/dead-letters",
    response_model=DeadLetterList,
    summary="List dead letters",
    description="Jobs that failed their last attempt, newest first; of one queue or all.",
    responses=problem_responses(401, 403, 422, 503),
)
async def list_dead_letters(
    runtime: RuntimeDep,
    client: RedisDep,
    _auth: ReadAuth,
    queue: Annotated[str | None, Query(max_length=100, description="Only this queue.")] = None,
    limit: Annotated[int, Query(ge=1, le=500, description="At most this many.")] = 50,
) -> DeadLetterList:
    if queue is not None:
        _check_queue(runtime, queue)
    queues = [queue] if queue is not None else runtime.config.queue_names
    found = await dead_letters.list_dead_letters(client, queues, limit=limit)
    return DeadLetterList(dead_letters=found)


@router.post(
    "/dead-letters:retry",
    response_model=RetriedCount,
    summary="Retry every dead letter of a queue",
    description="Re-publishes every job in the queue's dead letters (same ids, attempts "
    "reset). Jobs whose task or queue no longer exists stay, counted as `skipped`.",
    responses=problem_responses(401, 403, 422, 503),
)
async def retry_queue(
    queue: RequiredQueue,
    runtime: RuntimeDep,
    client: RedisDep,
    celery: CeleryDep,
    _auth: WriteAuth,
) -> RetriedCount:
    _check_queue(runtime, queue)
    done = await dead_letters.retry_queue(client, _context(runtime, celery), queue, now=now_s())
    return RetriedCount(retried=done.retried, skipped=done.skipped)


@router.delete(
    "/dead-letters",
    response_model=PurgedCount,
    summary="Purge every dead letter of a queue",
    description="Deletes the queue's dead jobs and their records.",
    responses=problem_responses(401, 403, 422, 503),
)
async def purge_queue(
    queue: RequiredQueue, runtime: RuntimeDep, client: RedisDep, _auth: WriteAuth
) -> PurgedCount:
    _check_queue(runtime, queue)
    return PurgedCount(purged=await dead_letters.purge_queue(client, queue))


@router.post(
    "/dead-letters/{job_id}/retry",
    response_model=JobRecord,
    summary="Retry a dead letter",
    description="Re-publishes the job with the same id: state `queued`, attempts reset to "
    "0, its last error kept until the next run; it leaves the dead letters. One atomic "
    "step: retrying twice publishes once.",
    responses=problem_responses(401, 403, 404, 409, 422, 503),
)
async def retry_dead_letter(
    job_id: JobId,
    runtime: RuntimeDep,
    client: RedisDep,
    celery: CeleryDep,
    _auth: WriteAuth,
) -> JobRecord:
    return await dead_letters.retry_one(client, _context(runtime, celery), job_id, now=now_s())


@router.delete(
    "/dead-letters/{job_id}",
    status_code=204,
    response_class=Response,
    summary="Delete a dead letter",
    description="Removes the job from the dead letters and deletes its record.",
    responses=problem_responses(401, 403, 404, 409, 422, 503),
)
async def delete_dead_letter(job_id: JobId, client: RedisDep, _auth: WriteAuth) -> Response:
    await dead_letters.purge_one(client, job_id)
    return Response(status_code=204)
