"""Celery signal handlers, one module per concern; importing this connects them all."""

from jobyard.worker.signals import records

__all__ = ["records"]
