"""Celery signal handlers, one module per concern; importing this connects them all.

`records` connects before the others (they import it): they read what its `task_prerun`
handler leaves on the request (`jobyard_start`, `jobyard_attempts`).
"""

from jobyard.worker.signals import logs, metrics, pending, records, tracing

__all__ = ["logs", "metrics", "pending", "records", "tracing"]
