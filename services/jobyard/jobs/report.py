"""`report.export`: turn a JSON-lines file into a CSV file, reporting progress.

Both files live in `JOBYARD_EXPORT_DIR`: the job reads `source` (a relative path there,
e.g. `inputs/orders.jsonl`) and writes `output` (a bare file name) beside it. Absolute
paths and `..` are refused, and no file is opened through a symbolic link or with a
second hard link (`jobs._files`): a link planted in the directory (at the source, the
temporary file or the output) fails the job with the reason, so it never reads or writes
a file outside the directory.

Each non-blank line must be a JSON object; it becomes one CSV row. Columns are `columns`
when given (keys a row lacks give empty cells, keys not listed are left out), else the
keys of the first row, in order: a later row with a key the first row lacked fails the
job, naming the line, rather than silently drop data. Cells: strings as they are, numbers
as in JSON, `true`/`false`, null as an empty cell, objects and arrays as compact JSON.
A text cell or column name that starts with `=`, `+`, `-`, `@`, a tab or a carriage
return gets a leading `'`, so a spreadsheet shows it as text instead of running it as a
formula (CSV injection; `escape_formulas: false` turns this off).

The file is streamed (constant memory) into a temporary file that replaces `output` only
when complete, so readers never see half a file and a retried or cancelled job leaves
none behind. Progress (lines read of the total) is reported about every 0.2 s, and a
cancel request is honoured at the same pace.
"""

from __future__ import annotations

import csv
import io
import json
import os
import re
import time
from collections.abc import Iterator
from pathlib import Path, PurePosixPath
from typing import IO, Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator

from jobyard.core.context import JobContext
from jobyard.core.registry import PermanentError, RetryPolicy, job
from jobyard.jobs._files import (
    UnsafePathError,
    create_exclusive,
    open_dir,
    open_source,
    replace_into,
)

OUTPUT_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9._-]{0,250}\.csv$"
TICK_S = 0.2
"""How often progress is written and cancellation checked."""
MAX_COLUMNS = 1000
FORMULA_STARTS = ("=", "+", "-", "@", "\t", "\r")
"""First characters that make a spreadsheet read a cell as a formula (OWASP, CSV
injection)."""

REPORT_RETRY = RetryPolicy(max_attempts=3, backoff_s=5.0, retry_on=(OSError,))
"""I/O errors (a full or flaky disk) are retried; bad input is not."""


class ExportArgs(BaseModel):
    """Arguments of `report.export`."""

    model_config = ConfigDict(extra="forbid", use_attribute_docstrings=True)

    source: Annotated[str, Field(min_length=1, max_length=1024)]
    """The JSON-lines file, relative to JOBYARD_EXPORT_DIR (e.g. `inputs/orders.jsonl`);
    absolute paths and `..` are refused."""
    output: Annotated[str, Field(pattern=OUTPUT_PATTERN)]
    """The CSV file name written in JOBYARD_EXPORT_DIR, e.g. `orders-2024-05.csv`
    (letters, digits, `.`, `_`, `-`; ends in `.csv`). An existing file is replaced."""
    columns: (
        Annotated[
            list[Annotated[str, Field(min_length=1, max_length=200)]],
            Field(min_length=1, max_length=MAX_COLUMNS),
        ]
        | None
    ) = None
    """Column order. Default: the keys of the first row (a later row with another key
    then fails the job)."""
    delimiter: Literal[",", ";", "\t", "|"] = ","
    """Field separator of the CSV file."""
    escape_formulas: bool = True
    """Prefix `'` to text cells and column names that start with `=`, `+`, `-`, `@`, a
    tab or a carriage return, so a spreadsheet never runs them as formulas (CSV
    injection). False writes them as they are (for a consumer that is not a
    spreadsheet)."""

    @field_validator("source")
    @classmethod
    def _source_inside(cls, value: str) -> str:
        if "\0" in value or "\\" in value:
            raise ValueError("must be a relative path with / separators (no NUL, no backslash)")
        path = PurePosixPath(value)
        if path.is_absolute():
            raise ValueError(
                "must be relative to JOBYARD_EXPORT_DIR (e.g. inputs/data.jsonl), "
                "not an absolute path"
            )
        if ".." in path.parts:
            raise ValueError("must not contain '..': sources are read only inside the export dir")
        if path.name in ("", "."):
            raise ValueError("must name a file")
        return value

    @field_validator("columns")
    @classmethod
    def _columns_unique(cls, value: list[str] | None) -> list[str] | None:
        if value is not None:
            dupes = sorted({c for c in value if value.count(c) > 1})
            if dupes:
                raise ValueError(f"columns must be unique; repeated: {', '.join(dupes)}")
        return value


def cell(value: Any) -> str:
    """How one JSON value is written in a CSV cell."""
    if value is None:
        return ""
    if isinstance(value, str):
        return value
    if isinstance(value, bool):
        return "true" if value else "false"
    return json.dumps(value, ensure_ascii=False, separators=(",", ":"))


def text_cell(value: str, escape_formulas: bool) -> str:
    """A text cell (or column name), with a leading `'` if it could run as a formula."""
    if escape_formulas and value.startswith(FORMULA_STARTS):
        return "'" + value
    return value


def count_lines(f: IO[bytes]) -> int:
    """Lines in the file from where it stands (a last line without a newline counts)."""
    lines = 0
    last = b"\n"
    while chunk := f.read(1 << 20):
        lines += chunk.count(b"\n")
        last = chunk[-1:]
    return lines + (0 if last == b"\n" else 1)


def _reject_constant(name: str) -> Any:
    raise ValueError(f"{name} is not valid JSON")


def read_rows(f: IO[bytes], source: str) -> Iterator[tuple[int, dict[str, Any]]]:
    """(line number, object) for every non-blank line; bad lines fail the job."""
    for number, line in enumerate(f, start=1):
        if not line.strip():
            continue
        try:
            row = json.loads(line, parse_constant=_reject_constant)
        except ValueError as exc:
            raise PermanentError(f"{source}: line {number} is not valid JSON: {exc}") from exc
        if not isinstance(row, dict):
            raise PermanentError(
                f"{source}: line {number} is a JSON {type(row).__name__}, not an object"
            )
        yield number, row


def part_name(output: str, job_id: str) -> str:
    """The temporary file the job writes before renaming it to `output`."""
    safe_id = re.sub(r"[^A-Za-z0-9_-]", "_", job_id)[:64]
    return f".{output}.{safe_id}.part"


@job("report.export", args=ExportArgs, queue="reports", retry=REPORT_RETRY, idempotent=True)
def export(ctx: JobContext, args: ExportArgs) -> dict[str, Any]:
    """Turn a JSON-lines file in the export directory into a CSV file there.

    Result: `{"path": <CSV path>, "rows": <data rows>, "bytes": <file size>}`.
    """
    ctx.settings.export_dir.mkdir(parents=True, exist_ok=True)
    export_dir = ctx.settings.export_dir.resolve()
    dir_fd = open_dir(export_dir)
    try:
        return _export(ctx, args, dir_fd, export_dir)
    except UnsafePathError as exc:
        raise PermanentError(f"refused a file in the export directory {export_dir}: {exc}") from exc
    finally:
        os.close(dir_fd)


def _export(ctx: JobContext, args: ExportArgs, dir_fd: int, export_dir: Path) -> dict[str, Any]:
    try:
        source = open_source(dir_fd, args.source)
    except FileNotFoundError:
        raise PermanentError(
            f"source {args.source!r} is not a file in the export directory {export_dir}"
        ) from None
    with source:
        total = count_lines(source)
        source.seek(0)
        written = _write(ctx, args, dir_fd, source, total)
    return {"path": str(export_dir / args.output), **written}


def _write(
    ctx: JobContext, args: ExportArgs, dir_fd: int, source: IO[bytes], total: int
) -> dict[str, Any]:
    """Write the CSV file (a temporary file renamed to `output`): rows and bytes."""
    escape = args.escape_formulas
    ctx.progress(current=0, total=total, message="starting")
    part = part_name(args.output, ctx.job_id)
    rows = 0
    line = 0
    raw = create_exclusive(dir_fd, part)
    try:
        with io.TextIOWrapper(raw, encoding="utf-8", newline="") as out:
            writer = csv.writer(out, delimiter=args.delimiter)
            columns = list(args.columns) if args.columns is not None else None
            if columns is not None:
                writer.writerow([text_cell(c, escape) for c in columns])
            next_tick = time.monotonic() + TICK_S
            for line, row in read_rows(source, args.source):
                if columns is None:
                    columns = list(row)
                    writer.writerow([text_cell(c, escape) for c in columns])
                elif args.columns is None:
                    extra = [k for k in row if k not in columns]
                    if extra:
                        raise PermanentError(
                            f"{args.source}: line {line} has key {extra[0]!r}, which the first "
                            f"row lacks (columns: {', '.join(columns)}); pass `columns` to "
                            "choose the columns"
                        )
                writer.writerow(
                    [
                        text_cell(v, escape) if isinstance(v, str) else cell(v)
                        for v in (row.get(c) for c in columns)
                    ]
                )
                rows += 1
                if time.monotonic() >= next_tick:
                    ctx.raise_if_cancelled(
                        f"cancelled at line {line} of {total}; the partial file was removed"
                    )
                    ctx.progress(current=line, total=total, message=f"{rows} rows written")
                    next_tick = time.monotonic() + TICK_S
            out.flush()
            os.fsync(out.fileno())
            size = os.fstat(out.fileno()).st_size
        replace_into(dir_fd, part, args.output)
    except BaseException:
        os.unlink(part, dir_fd=dir_fd)
        raise
    ctx.progress(current=total, total=total, message=f"{rows} rows written")
    return {"rows": rows, "bytes": size}
