"""Every router of the API, gathered in one place."""

from fastapi import APIRouter

from jobyard.api.routers import (
    dead_letters,
    docs,
    health,
    jobs,
    queues,
    schedules,
    tasks,
    workflows,
)

api_router = APIRouter()
api_router.include_router(health.router)
api_router.include_router(jobs.router)
api_router.include_router(workflows.router)
api_router.include_router(queues.router)
api_router.include_router(tasks.router)
api_router.include_router(schedules.router)
api_router.include_router(dead_letters.router)
api_router.include_router(docs.router)

__all__ = ["api_router"]
