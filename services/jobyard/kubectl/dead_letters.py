"""`dead-letters QUEUE [list|retry|purge]` and `jobs JOB_ID`: through the jobyard API."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

import click

from jobyard.client import ApiError, JobyardClient
from jobyard.core.records import JobRecord, JobState
from jobyard.kubectl.common import (
    YES,
    can_confirm,
    confirm,
    connection_options,
    open_release,
    output_option,
)
from jobyard.kubectl.errors import JobyardApiError
from jobyard.kubectl.output import duration, emit, table
from jobyard.kubectl.proxy import api_client, describe
from jobyard.kubectl.release import Release
from jobyard.kubectl.tokens import Token, resolve

API_TOKEN = click.option(
    "--api-token",
    envvar="JOBYARD_API_TOKEN",
    default=None,
    metavar="TOKEN",
    help="jobyard API token (default: JOBYARD_API_TOKEN, else the release's Secret when "
    "RBAC allows).",
)


@contextmanager
def api_errors(token: Token) -> Iterator[None]:
    """jobyard API errors as plugin errors, with what to do about a missing token."""
    try:
        yield
    except ApiError as exc:
        raise JobyardApiError(describe(exc, token.hint)) from exc


def dead_letter_rows(records: list[JobRecord], now_s: float) -> list[list[str]]:
    rows = []
    for r in records:
        died = "-" if r.finished_at is None else duration(now_s - r.finished_at) + " ago"
        error = "-" if r.error is None else f"{r.error.type}: {r.error.message}"
        rows.append([r.id, r.task, str(r.attempts), died, error[:80]])
    return rows


def _where(release: Release, queue: str) -> str:
    return f"queue {queue!r} (release {release.name}, namespace {release.namespace})"


def _check_dead(client: JobyardClient, job_id: str, queue: str) -> None:
    record = client.get_job(job_id)
    if record.queue != queue:
        raise JobyardApiError(f"job {job_id} belongs to queue {record.queue!r}, not {queue!r}")
    if record.state is not JobState.DEAD:
        raise JobyardApiError(f"job {job_id} is {record.state.value}, not a dead letter")


def _each(job_ids: tuple[str, ...], token: Token, action: Callable[[str], str]) -> list[str]:
    done = []
    for job_id in job_ids:
        with api_errors(token):
            done.append(action(job_id))
    return done


@click.command("dead-letters")
@click.argument("queue")
@click.argument("action", required=False, type=click.Choice(["list", "retry", "purge"]))
@click.argument("job_ids", nargs=-1, metavar="[JOB_ID]...")
@click.option(
    "--limit",
    type=click.IntRange(1, 500),
    default=50,
    show_default=True,
    help="list: at most this many, newest first.",
)
@YES
@API_TOKEN
@connection_options
@output_option
@click.pass_context
def dead_letters(
    ctx: click.Context,
    /,
    queue: str,
    action: str | None,
    job_ids: tuple[str, ...],
    limit: int,
    yes: bool,
    api_token: str | None,
    output: str,
    **_: Any,
) -> None:
    """QUEUE's dead letters: list (default), retry or purge (all, or the JOB_IDs given).

    Retrying the whole queue and purging ask first (--yes for scripts).
    """
    action = action or "list"
    if action == "list" and job_ids:
        raise click.UsageError("list takes no JOB_ID")
    if action == "purge" or (action == "retry" and not job_ids):
        can_confirm(yes)
    kube, release = open_release(ctx)
    token = resolve(kube, release, api_token, write=action != "list")
    with api_client(kube, release, token.value) as client, api_errors(token):
        if action == "list":
            records = client.dead_letters(queue=queue, limit=limit)
            if output != "table":
                emit(
                    {"queue": queue, "dead_letters": [r.model_dump(mode="json") for r in records]},
                    output,
                )
            elif not records:
                click.echo(f"no dead letters in {_where(release, queue)}")
            else:
                click.echo(
                    table(
                        ["ID", "TASK", "ATTEMPTS", "DIED", "ERROR"],
                        dead_letter_rows(records, time.time()),
                        right={2, 3},
                    )
                )
            return
        result: dict[str, Any]
        if not job_ids:
            count = client.queue(queue).dead_letters
            if action == "retry":
                confirm(f"Retry the {count} dead letter(s) of {_where(release, queue)}?", yes)
                done = client.retry_dead_letters(queue)
                result = {
                    "queue": queue,
                    "action": "retry",
                    "retried": done.retried,
                    "skipped": done.skipped,
                }
                text = f"retried {done.retried} dead letter(s) of queue {queue!r}"
                if done.skipped:
                    text += f"; {done.skipped} skipped (their task or queue no longer exists)"
            else:
                confirm(
                    f"Permanently delete the {count} dead letter(s) of {_where(release, queue)}?",
                    yes,
                )
                purged = client.purge_dead_letters(queue)
                result = {"queue": queue, "action": "purge", "purged": purged}
                text = f"purged {purged} dead letter(s) of queue {queue!r}"
        elif action == "retry":

            def retry_one(job_id: str) -> str:
                _check_dead(client, job_id, queue)
                return client.retry_dead_letter(job_id).id

            ids = _each(job_ids, token, retry_one)
            result = {"queue": queue, "action": "retry", "retried": len(ids), "job_ids": ids}
            text = "\n".join(f"retried {i}" for i in ids)
        else:
            confirm(
                f"Permanently delete {len(job_ids)} dead letter(s) of {_where(release, queue)}: "
                f"{', '.join(job_ids)}?",
                yes,
            )

            def purge_one(job_id: str) -> str:
                _check_dead(client, job_id, queue)
                client.delete_dead_letter(job_id)
                return job_id

            ids = _each(job_ids, token, purge_one)
            result = {"queue": queue, "action": "purge", "purged": len(ids), "job_ids": ids}
            text = "\n".join(f"purged {i}" for i in ids)
    if output == "table":
        click.echo(text)
    else:
        emit(result, output)


@click.command()
@click.argument("job_id")
@API_TOKEN
@connection_options
@output_option
@click.pass_context
def jobs(ctx: click.Context, /, job_id: str, api_token: str | None, output: str, **_: Any) -> None:
    """Show a job: state, attempts, times, progress, result or error."""
    kube, release = open_release(ctx)
    token = resolve(kube, release, api_token, write=False)
    with api_client(kube, release, token.value) as client, api_errors(token):
        record = client.get_job(job_id)
    if output != "table":
        emit(record.model_dump(mode="json"), output)
        return
    from jobyard.cli_output import job_summary

    rows = job_summary(record)
    width = max(len(label) for label, _ in rows)
    for label, value in rows:
        click.echo(f"{label:<{width}}  {value}")
