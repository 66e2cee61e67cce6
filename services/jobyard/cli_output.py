"""How client commands show jobs, queues and dead letters (tables, summaries, JSON)."""

from __future__ import annotations

import json
import time
from datetime import UTC, datetime
from typing import Any

from rich.console import Console
from rich.table import Table

from jobyard.cli_input import format_duration_s
from jobyard.client import QueueStats
from jobyard.core.records import JobRecord, JobState

NON_TERMINAL_WIDTH = 200
"""Piped output is not cut to 80 columns: a job id alone is 36."""


def console(*, stderr: bool = False) -> Console:
    """A rich console; wide and colourless when not writing to a terminal."""
    out = Console(stderr=stderr, highlight=False, soft_wrap=False)
    if not out.is_terminal:
        out = Console(stderr=stderr, highlight=False, width=NON_TERMINAL_WIDTH)
    return out


def print_json(value: Any) -> None:
    """Pretty JSON on stdout (machine-readable: no colour, no wrapping)."""
    print(json.dumps(value, indent=2, sort_keys=False, default=str))


def format_time(ts: float | None) -> str:
    """`2026-05-09 10:00:01Z` (UTC), or `-`."""
    if ts is None:
        return "-"
    return datetime.fromtimestamp(ts, UTC).strftime("%Y-%m-%d %H:%M:%SZ")


def format_progress(record: JobRecord) -> str | None:
    """`3/10 parsing`, `42 rows`, or None when the job reported nothing."""
    p = record.progress
    if p is None:
        return None
    done = f"{p.current:g}" if p.total is None else f"{p.current:g}/{p.total:g}"
    return f"{done} {p.message}" if p.message else done


def job_summary(record: JobRecord) -> list[tuple[str, str]]:
    """The labelled lines `jobyard status` prints."""
    rows = [
        ("id", record.id),
        ("task", record.task),
        ("queue", record.queue),
        ("state", record.state.value),
        ("attempts", f"{record.attempts} of {record.max_attempts}"),
        ("priority", str(record.priority)),
        ("enqueued", format_time(record.enqueued_at)),
    ]
    if record.eta is not None and not record.state.terminal:
        retry = record.state is JobState.RETRYING
        rows.append(("next try" if retry else "eta", format_time(record.eta)))
    if record.started_at is not None:
        started = format_time(record.started_at)
        since = record.enqueued_at if record.eta is None else record.eta
        if record.attempts <= 1 and since <= record.started_at:
            started += f" (waited {format_duration_s(record.started_at - since)})"
        rows.append(("started", started))
    if record.finished_at is not None:
        took = ""
        if record.started_at is not None:
            took = f" (ran {format_duration_s(record.finished_at - record.started_at)})"
        rows.append(("finished", format_time(record.finished_at) + took))
    progress = format_progress(record)
    if progress is not None:
        rows.append(("progress", progress))
    if record.cancel_requested and not record.state.terminal:
        rows.append(("cancel", "requested"))
    if record.state is JobState.SUCCEEDED:
        rows.append(("result", json.dumps(record.result, default=str)))
    if record.error is not None:
        rows.append(("error", f"{record.error.type}: {record.error.message}"))
    if record.idempotency_key:
        rows.append(("idem key", record.idempotency_key))
    return rows


def print_job(out: Console, record: JobRecord) -> None:
    width = max(len(label) for label, _ in job_summary(record))
    for label, value in job_summary(record):
        out.print(f"{label:<{width}}  {value}", markup=False)


def queue_table(queues: list[QueueStats]) -> Table:
    """`jobyard queues`: depth, oldest age, in progress, workers, dead letters."""
    table = Table(box=None, pad_edge=False, padding=(0, 3, 0, 0), header_style="bold")
    table.add_column("QUEUE", no_wrap=True)
    for name in ("DEPTH", "OLDEST", "IN PROGRESS", "WORKERS", "DEAD LETTERS"):
        table.add_column(name, justify="right", no_wrap=True)
    for q in queues:
        oldest = "-" if q.oldest_job_age_s is None else format_duration_s(q.oldest_job_age_s)
        table.add_row(
            q.name, str(q.depth), oldest, str(q.in_progress), str(q.workers), str(q.dead_letters)
        )
    return table


def dead_letter_table(records: list[JobRecord], now_s: float | None = None) -> Table:
    """`jobyard dead-letters`: one row per dead job, newest first as the API sends them."""
    now = time.time() if now_s is None else now_s
    table = Table(box=None, pad_edge=False, padding=(0, 3, 0, 0), header_style="bold")
    table.add_column("ID", no_wrap=True)
    table.add_column("TASK", no_wrap=True)
    table.add_column("QUEUE", no_wrap=True)
    table.add_column("ATTEMPTS", justify="right", no_wrap=True)
    table.add_column("DIED", justify="right", no_wrap=True)
    table.add_column("ERROR", overflow="ellipsis", no_wrap=True, max_width=80)
    for r in records:
        died = "-" if r.finished_at is None else format_duration_s(now - r.finished_at) + " ago"
        error = "-" if r.error is None else f"{r.error.type}: {r.error.message}"
        table.add_row(r.id, r.task, r.queue, str(r.attempts), died, error)
    return table
