"""A small `/metrics` HTTP server for the processes without a web app (workers, beat)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from prometheus_client import REGISTRY, start_http_server
from prometheus_client.registry import Collector

from jobyard.core.errors import ConfigError
from jobyard.core.settings import Settings
from jobyard.observability import metrics


def serve_metrics(host: str, port: int, registry: Collector = REGISTRY) -> Any:
    """Serve `registry` at `http://host:port/metrics` from a daemon thread.

    Returns the server (its `shutdown()` stops it). Raises OSError when the port is taken.
    """
    server, _thread = start_http_server(port, addr=host, registry=registry)
    return server


def serve_beat_metrics(settings: Settings, is_leader: Callable[[], bool]) -> Any:
    """Beat's `/metrics` on `settings.beat_metrics_port` (0: off); returns the server.

    `jobyard_beat_leader` reads `is_leader()` at every scrape. Raises ConfigError when the
    port is taken.
    """
    metrics.track_beat_leader(is_leader)
    metrics.set_build_info("beat")
    if settings.beat_metrics_port == 0:
        return None
    try:
        return serve_metrics(settings.metrics_host, settings.beat_metrics_port)
    except OSError as exc:
        raise ConfigError(
            f"JOBYARD_BEAT_METRICS_PORT: cannot serve /metrics on "
            f"{settings.metrics_host}:{settings.beat_metrics_port}: {exc} "
            "(give each beat on one host its own port, or 0 to turn it off)"
        ) from exc


def stop_metrics_server(server: Any) -> None:
    """Stop a server :func:`serve_metrics` started (None: nothing to do)."""
    if server is not None:
        server.shutdown()
        server.server_close()
