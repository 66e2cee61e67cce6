"""`/v1/jobs`: enqueue (one, or a batch), read, list and cancel jobs."""

from __future__ import annotations

from typing import Annotated

from celery import Celery
from fastapi import APIRouter, Depends, Header, Path, Query, Request, Response
from pydantic import ValidationError

from jobyard.api.deps import CeleryDep, ReadAuth, RedisDep, RuntimeDep, WriteAuth
from jobyard.api.idempotency import (
    IdempotencyConflictError,
    IdempotencyInFlightError,
    enqueue_once,
)
from jobyard.api.problems import (
    FieldError,
    ProblemError,
    invalid_input,
    problem_responses,
    validation_field_errors,
)
from jobyard.api.schemas import (
    IDEMPOTENCY_KEY_HEADER,
    IDEMPOTENCY_KEY_PATTERN,
    BatchIn,
    JobIn,
    JobList,
)
from jobyard.core import jobs, store
from jobyard.core.bootstrap import Runtime
from jobyard.core.enqueue import PreparedJob, prepare
from jobyard.core.errors import UnknownQueueError
from jobyard.core.records import JobRecord, JobState
from jobyard.core.redis import AtomicWrites
from jobyard.core.store import now_s
from jobyard.observability import metrics

router = APIRouter(prefix="/v1", tags=["jobs"])

JobId = Annotated[str, Path(min_length=1, max_length=200, description="The job's id.")]


async def idempotency_key(
    request: Request,
    key: Annotated[
        str | None,
        Header(
            alias=IDEMPOTENCY_KEY_HEADER,
            pattern=IDEMPOTENCY_KEY_PATTERN,
            description="1..200 printable characters, sent once: the same key enqueues "
            "one job, and repeating the request returns that job (200, "
            "`Idempotent-Replayed: true`).",
        ),
    ] = None,
) -> str | None:
    """The request's `Idempotency-Key`; sent more than once, it is refused (which one
    would count is ambiguous, and proxies may pick another than the API)."""
    sent = len(request.headers.getlist(IDEMPOTENCY_KEY_HEADER))
    if sent > 1:
        raise invalid_input(
            [
                FieldError(
                    field=IDEMPOTENCY_KEY_HEADER,
                    message=f"send the header once, not {sent} times",
                )
            ]
        )
    return key


IdempotencyKey = Annotated[str | None, Depends(idempotency_key)]


def location(job_id: str) -> str:
    return f"/v1/jobs/{job_id}"


def job_not_found(job_id: str) -> ProblemError:
    return ProblemError(
        404,
        "job-not-found",
        "Job not found",
        f"no job {job_id!r}: it never existed or its record expired",
    )


def _prepare(runtime: Runtime, celery: Celery, item: JobIn, key: str | None) -> PreparedJob:
    try:
        return prepare(celery, runtime.config, runtime.registry, item.to_request(key), now=now_s())
    except ValidationError as exc:
        raise invalid_input(validation_field_errors(exc, "args"), "Invalid arguments") from exc


@router.post(
    "/jobs",
    status_code=201,
    response_model=JobRecord,
    summary="Enqueue a job",
    description="Validates the task and its arguments, then writes the job's record and "
    "its message atomically (one Redis script call). 201 with `Location`; with an "
    "`Idempotency-Key` already used for the same body, 200 with that job.",
    responses={
        200: {"model": JobRecord, "description": "Replayed: the job of this Idempotency-Key"},
        **problem_responses(401, 403, 404, 409, 413, 422, 503),
    },
)
async def enqueue_job(
    body: JobIn,
    response: Response,
    runtime: RuntimeDep,
    client: RedisDep,
    celery: CeleryDep,
    _auth: WriteAuth,
    idempotency_key: IdempotencyKey,
) -> JobRecord:
    job = _prepare(runtime, celery, body, idempotency_key)
    limits = runtime.config.limits
    if idempotency_key is None:
        writes = AtomicWrites()
        store.plan_enqueue(writes, job.record, job.message, result_ttl_s=limits.result_ttl_s)
        await writes.apply(client)
        metrics.count_enqueued(job.record.queue, job.record.task)
        response.headers["Location"] = location(job.record.id)
        return job.record
    try:
        record, replayed = await enqueue_once(
            client,
            job,
            key=idempotency_key,
            fingerprint=body.fingerprint(),
            result_ttl_s=limits.result_ttl_s,
            idempotency_ttl_s=limits.idempotency_ttl_s,
        )
    except IdempotencyConflictError as exc:
        raise ProblemError(
            409,
            "idempotency-key-reused",
            "Idempotency-Key reused",
            str(exc),
            errors=[FieldError(field=IDEMPOTENCY_KEY_HEADER, message=str(exc))],
        ) from exc
    except IdempotencyInFlightError as exc:
        raise ProblemError(
            409, "idempotency-key-in-flight", "Idempotency-Key in flight", str(exc)
        ) from exc
    response.headers["Location"] = location(record.id)
    if replayed:
        response.status_code = 200
        response.headers["Idempotent-Replayed"] = "true"
    else:
        metrics.count_enqueued(record.queue, record.task)
    return record


@router.post(
    "/jobs:batch",
    status_code=201,
    response_model=JobList,
    summary="Enqueue many jobs at once",
    description="All or nothing: every job is validated first (a 422 names each bad "
    "field as `jobs[i].…`), then every record and message is written atomically in one "
    "Redis script call (one round trip).",
    responses=problem_responses(401, 403, 413, 422, 503),
)
async def enqueue_batch(
    body: BatchIn,
    runtime: RuntimeDep,
    client: RedisDep,
    celery: CeleryDep,
    _auth: WriteAuth,
) -> JobList:
    limits = runtime.config.limits
    if len(body.jobs) > limits.max_batch_size:
        raise invalid_input(
            [
                FieldError(
                    field="jobs",
                    message=f"at most {limits.max_batch_size} jobs per batch "
                    f"(limits.max_batch_size), got {len(body.jobs)}",
                )
            ]
        )
    prepared = jobs.prepare_many(
        celery,
        runtime.config,
        runtime.registry,
        [item.to_request() for item in body.jobs],
        now=now_s(),
    )
    writes = AtomicWrites()
    store.plan_enqueue_many(
        writes, ((job.record, job.message) for job in prepared), result_ttl_s=limits.result_ttl_s
    )
    await writes.apply(client)
    metrics.count_enqueued_records(job.record for job in prepared)
    return JobList(jobs=[job.record for job in prepared])


@router.get(
    "/jobs",
    response_model=JobList,
    summary="List recent jobs",
    description="Newest first, optionally filtered; at most the 5000 most recent jobs "
    "(of the queue, when given) are examined.",
    responses=problem_responses(401, 403, 422, 503),
)
async def list_jobs(
    runtime: RuntimeDep,
    client: RedisDep,
    _auth: ReadAuth,
    queue: Annotated[str | None, Query(max_length=100, description="A configured queue.")] = None,
    state: Annotated[JobState | None, Query(description="Only jobs in this state.")] = None,
    task: Annotated[str | None, Query(max_length=200, description="Only this task.")] = None,
    limit: Annotated[int, Query(ge=1, le=500, description="At most this many jobs.")] = 50,
) -> JobList:
    if queue is not None and queue not in runtime.config.queue_names:
        raise UnknownQueueError(queue, runtime.config.queue_names)
    found = await jobs.list_jobs(client, queue=queue, state=state, task=task, limit=limit)
    return JobList(jobs=found)


@router.get(
    "/jobs/{job_id}",
    response_model=JobRecord,
    summary="Get a job",
    description="State, attempts, progress, result or error of one job.",
    responses=problem_responses(401, 403, 404, 422, 503),
)
async def get_job(job_id: JobId, client: RedisDep, _auth: ReadAuth) -> JobRecord:
    record = await jobs.get_job(client, job_id)
    if record is None:
        raise job_not_found(job_id)
    return record


@router.post(
    "/jobs/{job_id}/cancel",
    response_model=JobRecord,
    summary="Cancel a job",
    description="A queued, scheduled or retrying job is cancelled at once (200; a worker "
    "that receives its message skips it). A running job is asked to stop (202, "
    "`cancel_requested: true`): the job checks `ctx.cancel_requested()`. A finished job "
    "cannot be cancelled (409).",
    responses={
        202: {"model": JobRecord, "description": "The running job was asked to stop"},
        **problem_responses(401, 403, 404, 409, 422, 503),
    },
)
async def cancel_job(
    job_id: JobId,
    response: Response,
    runtime: RuntimeDep,
    client: RedisDep,
    _auth: WriteAuth,
) -> JobRecord:
    pipe = client.pipeline(transaction=False)
    jobs.plan_cancel(pipe, job_id, now=now_s(), cancelled_ttl_s=runtime.config.limits.result_ttl_s)
    outcome = jobs.parse_cancel(await pipe.execute())
    if outcome.previous is None or outcome.record is None:
        raise job_not_found(job_id)
    if outcome.stop_requested:
        response.status_code = 202
        return outcome.record
    if not outcome.cancelled:
        raise ProblemError(
            409,
            "job-finished",
            "Job already finished",
            f"job {job_id!r} is already {outcome.previous.value}; only queued, scheduled, "
            "retrying or started jobs can be cancelled",
        )
    return outcome.record
