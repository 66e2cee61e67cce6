"""The `jobyard` command: components (api, worker, beat, dev) and client commands."""

from __future__ import annotations

import sys
from typing import NoReturn

import click

from jobyard import __version__
from jobyard.core.bootstrap import Runtime, bootstrap
from jobyard.core.errors import ConfigError, JobyardError


def fail(message: str, code: int = 2) -> NoReturn:
    click.echo(f"jobyard: {message}", err=True)
    sys.exit(code)


def load_runtime() -> Runtime:
    try:
        return bootstrap()
    except ConfigError as exc:
        fail(f"configuration error:\n{exc}")


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="jobyard")
def main() -> None:
    """jobyard: background jobs on Celery and Redis."""


@main.command()
@click.option("--queue", "-q", "queue", required=False, help="The one queue this worker consumes.")
@click.option(
    "--concurrency",
    "-c",
    type=click.IntRange(1, 256),
    default=None,
    help="Prefork children (default: the queue's concurrency).",
)
@click.option(
    "--pool",
    type=click.Choice(["prefork", "solo", "threads"]),
    default="prefork",
    show_default=True,
    help="Celery execution pool.",
)
@click.option(
    "--check",
    is_flag=True,
    help="Liveness probe: exit 0 if this queue's worker heartbeat is fresh, else 1.",
)
def worker(queue: str | None, concurrency: int | None, pool: str, check: bool) -> None:
    """Run a worker that consumes exactly one queue."""
    rt = load_runtime()
    if queue is None:
        fail(f"--queue is required; configured queues: {', '.join(rt.config.queue_names)}")
    if queue not in rt.config.queue_names:
        fail(
            f"--queue: unknown queue {queue!r}; "
            f"configured queues: {', '.join(rt.config.queue_names)}"
        )
    if check:
        from jobyard.worker.heartbeat import check as check_heartbeat
        from jobyard.worker.heartbeat import heartbeat_path

        ok, why = check_heartbeat(
            heartbeat_path(rt.settings.heartbeat_dir, queue), rt.settings.heartbeat_max_age_s
        )
        click.echo(why, err=not ok)
        sys.exit(0 if ok else 1)
    from jobyard.worker.main import run_worker

    try:
        run_worker(rt.settings, rt.config, rt.registry, queue, concurrency=concurrency, pool=pool)
    except JobyardError as exc:
        fail(str(exc))


if __name__ == "__main__":
    main()
