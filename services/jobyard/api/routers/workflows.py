"""`/v1/workflows`: chains and groups of jobs, followed by one id."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Path

from jobyard.api.deps import CeleryDep, ReadAuth, RedisDep, RuntimeDep, WriteAuth
from jobyard.api.problems import ProblemError, problem_responses
from jobyard.api.schemas import WorkflowIn, WorkflowOut
from jobyard.core import keys, workflows
from jobyard.core.jobs import get_jobs
from jobyard.core.store import now_s
from jobyard.observability import metrics

router = APIRouter(prefix="/v1", tags=["workflows"])

WorkflowId = Annotated[str, Path(min_length=1, max_length=200, description="The workflow's id.")]


@router.post(
    "/workflows",
    status_code=201,
    response_model=WorkflowOut,
    summary="Start a chain or a group",
    description="A `chain` runs its jobs one after another (a failure stops the rest); a "
    "`group` runs them all at once. Every member's record is written with the messages "
    "that start the workflow, in one Redis transaction. Only a chain's first job may be "
    "delayed.",
    responses=problem_responses(401, 403, 413, 422, 503),
)
async def create_workflow(
    body: WorkflowIn,
    runtime: RuntimeDep,
    client: RedisDep,
    celery: CeleryDep,
    _auth: WriteAuth,
) -> WorkflowOut:
    prepared = workflows.prepare_workflow(
        celery,
        runtime.config,
        runtime.registry,
        body.type,
        [item.to_request() for item in body.jobs],
        now=now_s(),
    )
    pipe = client.pipeline(transaction=True)
    workflows.plan_create(pipe, prepared, result_ttl_s=runtime.config.limits.result_ttl_s)
    await pipe.execute()
    records = [job.record for job in prepared.jobs]
    metrics.count_enqueued_records(records)
    return WorkflowOut(
        id=prepared.id,
        type=prepared.type,
        state=workflows.derive_state(records),
        created_at=prepared.created_at,
        jobs=records,
    )


@router.get(
    "/workflows/{workflow_id}",
    response_model=WorkflowOut,
    summary="Get a workflow",
    description="The workflow's members in order, and its state derived from theirs.",
    responses=problem_responses(401, 403, 404, 422, 503),
)
async def get_workflow(workflow_id: WorkflowId, client: RedisDep, _auth: ReadAuth) -> WorkflowOut:
    stored = workflows.parse_workflow(
        workflow_id,
        await client.hgetall(keys.workflow(workflow_id)),
    )
    if stored is None:
        raise ProblemError(
            404,
            "workflow-not-found",
            "Workflow not found",
            f"no workflow {workflow_id!r}: it never existed or it expired",
        )
    members = await get_jobs(client, stored.job_ids)
    return WorkflowOut(
        id=stored.id,
        type=stored.type,
        state=workflows.derive_state(members),
        created_at=stored.created_at,
        jobs=[m for m in members if m is not None],
    )
