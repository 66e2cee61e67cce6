"""OpenTelemetry traces, configured from the standard `OTEL_*` variables; off by default.

Tracing is on when an exporter is configured: `OTEL_TRACES_EXPORTER` (`otlp`, `console`;
`none` turns it off) or an OTLP endpoint (`OTEL_EXPORTER_OTLP_ENDPOINT`,
`OTEL_EXPORTER_OTLP_TRACES_ENDPOINT`), and `OTEL_SDK_DISABLED` is not `true`. The service
name defaults to `jobyard-<component>` (`OTEL_SERVICE_NAME` overrides it); sampling,
batching and the OTLP endpoint, headers and timeout follow the SDK's own `OTEL_*`
variables. OTLP goes over HTTP/protobuf.

A job's trace starts where it is enqueued: :func:`trace_headers` puts the W3C
`traceparent` of the current span into the Celery message headers (`core.enqueue` does
it for every producer), and the worker's Celery instrumentation continues the trace in its
run span. Prefork workers set tracing up in each child (`worker_process_init`), never in
the parent: the batch span processor's thread does not survive a fork.
"""

from __future__ import annotations

import logging
import os
import threading
from collections.abc import Mapping
from typing import Any

from opentelemetry import propagate, trace

from jobyard.core.errors import ConfigError

log = logging.getLogger("jobyard.tracing")

_TRUE = frozenset({"true", "1", "yes", "on"})
OTLP_ENDPOINT_VARS = ("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT", "OTEL_EXPORTER_OTLP_ENDPOINT")
EXCLUDED_URLS = "/healthz,/readyz,/metrics"
"""API paths that never get a span (probes and scrapes)."""

_lock = threading.Lock()
_provider: Any = None
_provider_pid: int | None = None


def exporter_names(environ: Mapping[str, str] | None = None) -> list[str]:
    """The span exporters the environment asks for; empty when tracing is off."""
    env = os.environ if environ is None else environ
    if env.get("OTEL_SDK_DISABLED", "").strip().lower() in _TRUE:
        return []
    raw = env.get("OTEL_TRACES_EXPORTER", "").strip().lower()
    if raw:
        names = [n.strip() for n in raw.split(",") if n.strip()]
        return [] if names == ["none"] else [n for n in names if n != "none"]
    if any(env.get(var, "").strip() for var in OTLP_ENDPOINT_VARS):
        return ["otlp"]
    return []


def tracing_enabled(environ: Mapping[str, str] | None = None) -> bool:
    """Whether :func:`configure_tracing` would set up a tracer provider."""
    return bool(exporter_names(environ))


def _exporter(name: str, env: Mapping[str, str]) -> Any:
    if name == "otlp":
        protocol = (
            env.get("OTEL_EXPORTER_OTLP_TRACES_PROTOCOL")
            or env.get("OTEL_EXPORTER_OTLP_PROTOCOL")
            or "http/protobuf"
        )
        if protocol != "http/protobuf":
            raise ConfigError(
                f"OTEL_EXPORTER_OTLP_PROTOCOL: {protocol!r} is not supported; "
                "jobyard exports OTLP over 'http/protobuf'"
            )
        from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter

        return OTLPSpanExporter()
    if name == "console":
        from opentelemetry.sdk.trace.export import ConsoleSpanExporter

        return ConsoleSpanExporter()
    raise ConfigError(
        f"OTEL_TRACES_EXPORTER: unknown exporter {name!r}; allowed: otlp, console, none"
    )


def configure_tracing(component: str, environ: Mapping[str, str] | None = None) -> Any:
    """Set this process's tracer provider from `OTEL_*`; None when tracing is off.

    Once per process: a second call returns the same provider (a forked child gets its
    own). Raises ConfigError naming the variable when an exporter is unknown.
    """
    global _provider, _provider_pid
    env = os.environ if environ is None else environ
    names = exporter_names(env)
    if not names:
        return None
    with _lock:
        if _provider is not None and _provider_pid == os.getpid():
            return _provider
        from opentelemetry.sdk.resources import SERVICE_NAME, Resource
        from opentelemetry.sdk.trace import TracerProvider
        from opentelemetry.sdk.trace.export import BatchSpanProcessor

        exporters = [_exporter(name, env) for name in names]
        resource = Resource.create(
            {SERVICE_NAME: env.get("OTEL_SERVICE_NAME") or f"jobyard-{component}"}
        )
        provider = TracerProvider(resource=resource)
        for exporter in exporters:
            provider.add_span_processor(BatchSpanProcessor(exporter))
        trace.set_tracer_provider(provider)
        _provider, _provider_pid = provider, os.getpid()
        log.info("tracing on: exporting spans with %s", ", ".join(names))
        return provider


def current_provider() -> Any:
    """The provider :func:`configure_tracing` set in this process, or None."""
    return _provider if _provider_pid == os.getpid() else None


def shutdown_tracing(timeout_ms: int = 5000) -> None:
    """Export the spans still buffered and stop (before a process exits)."""
    global _provider, _provider_pid
    provider = current_provider()
    if provider is None:
        return
    provider.force_flush(timeout_ms)
    provider.shutdown()
    _provider, _provider_pid = None, None


def instrument_redis(provider: Any) -> None:
    """Spans for redis-py commands (sync and asyncio)."""
    from opentelemetry.instrumentation.redis import RedisInstrumentor

    instrumentor = RedisInstrumentor()
    if not instrumentor.is_instrumented_by_opentelemetry:
        instrumentor.instrument(tracer_provider=provider)


def instrument_redis_client(client: Any, provider: Any) -> None:
    """Spans for the commands of one redis-py client (not of every client in the process)."""
    from opentelemetry.instrumentation.redis import RedisInstrumentor

    RedisInstrumentor.instrument_client(client, tracer_provider=provider)


def instrument_celery(provider: Any) -> None:
    """A CONSUMER span per task run, continuing the trace of the message's `traceparent`."""
    from opentelemetry.instrumentation.celery import CeleryInstrumentor

    instrumentor = CeleryInstrumentor()
    if not instrumentor.is_instrumented_by_opentelemetry:
        instrumentor.instrument(tracer_provider=provider)


def instrument_fastapi(app: Any, provider: Any) -> None:
    """A SERVER span per request (probes and `/metrics` excluded), without the internal
    spans of each ASGI message."""
    from opentelemetry.instrumentation.fastapi import FastAPIInstrumentor

    # No child span per ASGI `receive`/`send` message: 2-3 spans of noise per request, and
    # a sixth of a request's CPU even with the sampler off.
    FastAPIInstrumentor.instrument_app(
        app,
        tracer_provider=provider,
        excluded_urls=EXCLUDED_URLS,
        exclude_spans=["receive", "send"],
    )


def trace_headers() -> dict[str, str]:
    """W3C trace-context headers (`traceparent`, ...) of the current span; {} without one."""
    carrier: dict[str, str] = {}
    if trace.get_current_span().get_span_context().is_valid:
        propagate.inject(carrier)
    return carrier


def current_trace_id() -> str | None:
    """The current span's trace id as 32 hex digits; None outside a valid span."""
    ctx = trace.get_current_span().get_span_context()
    return trace.format_trace_id(ctx.trace_id) if ctx.is_valid else None


def trace_id_from_traceparent(traceparent: object) -> str | None:
    """The trace id of a W3C `traceparent` value (`00-<trace id>-<span id>-<flags>`)."""
    if not isinstance(traceparent, str):
        return None
    parts = traceparent.split("-")
    if len(parts) != 4 or len(parts[1]) != 32 or parts[1] == "0" * 32:
        return None
    try:
        int(parts[1], 16)
    except ValueError:
        return None
    return parts[1]
