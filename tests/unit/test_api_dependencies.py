"""No request of the API waits for a thread: every dependency is a coroutine."""

from __future__ import annotations

import inspect
from collections.abc import Iterator
from typing import Any

from fastapi.routing import APIRoute

from jobyard.api.app import create_app


def _calls(dependant: Any) -> Iterator[Any]:
    for dep in dependant.dependencies:
        yield dep.call
        yield from _calls(dep)


def _api_routes(routes: list[Any]) -> Iterator[APIRoute]:
    for route in routes:
        if isinstance(route, APIRoute):
            yield route
        included = getattr(route, "original_router", None)  # an included router
        if included is not None:
            yield from _api_routes(included.routes)


def _is_async(call: Any) -> bool:
    if inspect.iscoroutinefunction(call):
        return True
    # A security scheme instance (HTTPBearer): FastAPI awaits its async __call__.
    return callable(call) and inspect.iscoroutinefunction(type(call).__call__)


def test_every_dependency_of_every_route_is_async() -> None:
    # FastAPI runs a plain `def` dependency in its thread pool: a thread hop per
    # dependency per request (measured: a third of an enqueue's CPU).
    app = create_app()
    routes = list(_api_routes(app.routes))
    assert len(routes) > 10
    sync = {
        (route.path, getattr(call, "__qualname__", repr(call)))
        for route in routes
        for call in _calls(route.dependant)
        if not _is_async(call)
    }
    assert sync == set()
