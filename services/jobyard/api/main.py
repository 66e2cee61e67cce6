"""`jobyard api`: serve the HTTP API with uvicorn (one process)."""

from __future__ import annotations

import uvicorn

from jobyard.api.app import create_app
from jobyard.api.http_protocol import bounded_protocol
from jobyard.core.bootstrap import Runtime
from jobyard.observability.logging import configure_logging

GRACEFUL_SHUTDOWN_S = 10


def run_api(runtime: Runtime) -> None:
    """Serve on `settings.api_host:api_port` until SIGINT/SIGTERM, with the header, body
    and keep-alive timeouts of the settings (`jobyard.api.http_protocol`)."""
    settings = runtime.settings
    configure_logging(settings, "api")
    uvicorn.run(
        create_app(runtime),
        host=settings.api_host,
        port=settings.api_port,
        log_config=None,  # uvicorn's records go to the root handler configure_logging set
        log_level=settings.log_level.lower(),
        proxy_headers=True,
        server_header=False,
        timeout_graceful_shutdown=GRACEFUL_SHUTDOWN_S,
        timeout_keep_alive=settings.api_keepalive_timeout_s,
        http=bounded_protocol(
            header_timeout_s=settings.api_header_timeout_s,
            body_timeout_s=settings.api_body_timeout_s,
            max_payload_bytes=runtime.config.limits.max_payload_bytes,
        ),
    )
