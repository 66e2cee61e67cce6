"""`/v1/tasks`: the registered job types and their argument schemas."""

from __future__ import annotations

from fastapi import APIRouter

from jobyard.api.deps import ReadAuth, RuntimeDep
from jobyard.api.problems import problem_responses
from jobyard.api.schemas import TaskInfo, TaskList

router = APIRouter(prefix="/v1", tags=["tasks"])


@router.get(
    "/tasks",
    response_model=TaskList,
    summary="List registered tasks",
    description="Every job type that can be enqueued, with the JSON schema of its arguments.",
    responses=problem_responses(401, 403),
)
async def list_tasks(runtime: RuntimeDep, _auth: ReadAuth) -> TaskList:
    config = runtime.config
    out = []
    for spec in runtime.registry.specs():
        home = config.queue(spec.queue) if spec.queue in config.queue_names else None
        out.append(
            TaskInfo(
                name=spec.name,
                queue=spec.queue,
                description=spec.description,
                args_schema=spec.args_model.model_json_schema(),
                max_attempts=spec.retry.max_attempts,
                soft_time_limit_s=spec.soft_time_limit_s
                or (home.soft_time_limit_s if home else None),
                time_limit_s=spec.time_limit_s or (home.time_limit_s if home else None),
                idempotent=spec.idempotent,
            )
        )
    return TaskList(tasks=out)
