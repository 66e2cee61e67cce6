"""`--wait`: follow a job until it ends, with a live progress bar fed by its `progress`."""

from __future__ import annotations

import time
from dataclasses import dataclass

from rich.console import Console
from rich.progress import (
    BarColumn,
    Progress,
    TaskID,
    TaskProgressColumn,
    TextColumn,
    TimeElapsedColumn,
)

from jobyard.client import JobyardClient
from jobyard.core.records import JobRecord, JobState

FIRST_POLL_S = 0.1
MAX_POLL_S = 1.0


@dataclass
class Followed:
    """The last record seen, and whether it reached a terminal state in time."""

    record: JobRecord
    finished: bool


def follow(
    client: JobyardClient,
    job_id: str,
    *,
    timeout_s: float | None,
    out: Console,
    first: JobRecord | None = None,
) -> Followed:
    """Poll `GET /v1/jobs/{id}` until a terminal state or `timeout_s`, drawing a bar on `out`.

    Raises the client's ApiError/ApiUnreachableError.
    """
    deadline = None if timeout_s is None else time.monotonic() + timeout_s
    record = first or client.get_job(job_id)
    poll_s = FIRST_POLL_S
    with Progress(
        TextColumn("{task.description}", markup=False),
        BarColumn(),
        TextColumn("{task.fields[count]}", markup=False),
        TaskProgressColumn(),
        TimeElapsedColumn(),
        console=out,
    ) as bar:
        task_id = bar.add_task(_description(record), total=None, count="")
        while True:
            _draw(bar, task_id, record)
            if record.state.terminal:
                return Followed(record, True)
            if deadline is not None and time.monotonic() >= deadline:
                return Followed(record, False)
            pause = poll_s if deadline is None else min(poll_s, deadline - time.monotonic())
            time.sleep(max(pause, 0))
            poll_s = min(poll_s * 1.5, MAX_POLL_S)
            record = client.get_job(job_id)


def _description(record: JobRecord) -> str:
    text = f"{record.task} {record.state.value}"
    if record.state is JobState.RETRYING:
        text += f" (attempt {record.attempts} of {record.max_attempts} failed)"
    if record.progress is not None and record.progress.message:
        text += f": {record.progress.message}"
    return text


def _draw(bar: Progress, task_id: TaskID, record: JobRecord) -> None:
    p = record.progress
    total = p.total if p is not None else None
    current = p.current if p is not None else 0.0
    if record.state is JobState.SUCCEEDED:
        total = total if total else 1.0
        current = total
    count = ""
    if p is not None:
        count = f"{current:g}/{total:g}" if total else f"{current:g}"
    bar.update(
        task_id,
        description=_description(record),
        total=total,
        completed=current,
        count=count,
    )
