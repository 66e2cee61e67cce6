"""The API's metrics: the request middleware and the unauthenticated `/metrics` route.

`create_app` adds them, and the tracing of requests::

    app.add_middleware(HttpMetricsMiddleware)
    app.include_router(metrics_router())
    instrument_tracing(app)

`/metrics` serves this process's metrics (requests, enqueued jobs, build info) and the
queue state measured from Redis at scrape time (:class:`QueueCollector`).
"""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Iterable
from typing import Any

from fastapi import APIRouter, Request, Response
from prometheus_client import REGISTRY, CollectorRegistry, generate_latest
from prometheus_client.core import Metric
from prometheus_client.exposition import CONTENT_TYPE_LATEST
from prometheus_client.multiprocess import MultiProcessCollector
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from jobyard.core.config import JobyardConfig
from jobyard.core.settings import Settings
from jobyard.observability import metrics, tracing
from jobyard.observability.queue_collector import QueueCollector

UNMATCHED_ROUTE = "unmatched"
"""`route` label of requests no route matched (bounded: never the raw path)."""


class HttpMetricsMiddleware:
    """Counts requests and times them by route template, method and status (pure ASGI)."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()
        status = 500

        async def send_wrapper(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = int(message["status"])
            await send(message)

        try:
            await self.app(scope, receive, send_wrapper)
        finally:
            route = scope.get("route")
            template = getattr(route, "path", None) or UNMATCHED_ROUTE
            method = metrics.http_method_label(scope.get("method", ""))
            metrics.http_requests().labels(route=template, method=method, status=str(status)).inc()
            metrics.http_request_duration().labels(route=template, method=method).observe(
                time.perf_counter() - started
            )


class _ProcessMetrics:
    """This process's own metrics (every API worker's, in multiprocess mode)."""

    def collect(self) -> Iterable[Metric]:
        if metrics.multiprocess_enabled():
            path = os.environ[metrics.MULTIPROC_ENV]
            collected: Iterable[Metric] = MultiProcessCollector(None, path=path).collect()
            return collected
        return REGISTRY.collect()


def metrics_registry(settings: Settings, config: JobyardConfig) -> CollectorRegistry:
    """What the API's `/metrics` exports: process metrics plus queue state from Redis."""
    registry = CollectorRegistry()
    registry.register(_ProcessMetrics())
    registry.register(QueueCollector(settings, config))
    metrics.set_build_info("api")
    return registry


_registry_lock = threading.Lock()


def _app_registry(app: Any) -> CollectorRegistry:
    """The app's registry, built at the first scrape from the lifespan's runtime."""
    registry: CollectorRegistry | None = getattr(app.state, "metrics_registry", None)
    if registry is None:
        with _registry_lock:
            registry = getattr(app.state, "metrics_registry", None)
            if registry is None:
                runtime = app.state.runtime
                registry = metrics_registry(runtime.settings, runtime.config)
                app.state.metrics_registry = registry
    return registry


def metrics_router() -> APIRouter:
    """`GET /metrics` in the Prometheus text format (no authentication)."""
    router = APIRouter()

    # A sync endpoint: FastAPI runs it in its thread pool, so the scrape's (short,
    # time-limited) Redis round trip never blocks the event loop.
    @router.get("/metrics", include_in_schema=False)
    def prometheus_metrics(request: Request) -> Response:
        registry = _app_registry(request.app)
        return Response(generate_latest(registry), media_type=CONTENT_TYPE_LATEST)

    return router


def instrument_tracing(app: Any) -> None:
    """FastAPI and redis-py spans when `OTEL_*` configures an exporter (else nothing)."""
    provider = tracing.configure_tracing("api")
    if provider is not None:
        tracing.instrument_fastapi(app, provider)
        tracing.instrument_redis(provider)
