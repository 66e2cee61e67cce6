"""The benchmark's RQ jobs."""

from __future__ import annotations

from bench.apps import stamp as stamps


def noop() -> None:
    """Do nothing."""


def stamp(t0: float) -> None:
    """Record the enqueue-to-start time."""
    stamps.record(t0)
