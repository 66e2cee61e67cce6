"""`/v1/schedules`: the configured periodic jobs, with their last and next runs."""

from __future__ import annotations

from fastapi import APIRouter

from jobyard.api.deps import ReadAuth, RedisDep, RuntimeDep
from jobyard.api.problems import problem_responses
from jobyard.api.schemas import ScheduleInfo, ScheduleList
from jobyard.core import keys
from jobyard.core.schedules import next_run_at
from jobyard.core.store import now_s

router = APIRouter(prefix="/v1", tags=["schedules"])


def _unix(raw: bytes | str | None) -> float | None:
    if raw is None:
        return None
    try:
        return float(raw)
    except ValueError:
        return None


@router.get(
    "/schedules",
    response_model=ScheduleList,
    summary="List schedules",
    description="Schedules from the config file; `last_run_at` is when beat last sent one.",
    responses=problem_responses(401, 403, 503),
)
async def list_schedules(runtime: RuntimeDep, client: RedisDep, _auth: ReadAuth) -> ScheduleList:
    schedules = runtime.config.schedules
    if not schedules:
        return ScheduleList(schedules=[])
    last_runs = await client.mget([keys.schedule_last_run(s.name) for s in schedules])
    now = now_s()
    out = []
    for schedule, raw in zip(schedules, last_runs, strict=True):
        last = _unix(raw)
        out.append(
            ScheduleInfo(
                name=schedule.name,
                task=schedule.task,
                cron=schedule.cron,
                interval_s=schedule.interval_s,
                queue=schedule.queue,
                missed=schedule.missed,
                enabled=schedule.enabled,
                last_run_at=last,
                next_run_at=next_run_at(schedule, last, now),
            )
        )
    return ScheduleList(schedules=out)
