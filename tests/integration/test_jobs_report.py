"""report.export: CSV files written and read back, progress, cancellation, refused paths,
links planted in the export directory, cells that could run as formulas."""

from __future__ import annotations

import csv
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from pydantic import ValidationError

from jobyard.core import keys
from jobyard.core.records import JobRecord, JobState
from jobyard.core.registry import PermanentError
from jobyard.jobs.report import ExportArgs, export, part_name
from tests.support.jobs import Jobs, start_worker

pytestmark = pytest.mark.integration

# Like the shared test config, with room for the big files below on a busy machine.
CONFIG = """
queues:
  - name: default
    soft_time_limit_s: 5
    time_limit_s: 8
  - name: emails
    soft_time_limit_s: 5
    time_limit_s: 8
  - name: reports
    concurrency: 1
    soft_time_limit_s: 90
    time_limit_s: 100
broker:
  max_retry_backoff_s: 5
limits:
  result_ttl_s: 3600
"""

BIG_ROWS = 150_000
"""Enough rows for an export that runs more than a second (progress ticks every 0.2 s)."""


@pytest.fixture
def export_dir(tmp_path: Path) -> Path:
    path = tmp_path / "exports"
    (path / "inputs").mkdir(parents=True)
    return path


@pytest.fixture
def jobs(redis_url: str, config_path: Path, export_dir: Path) -> Iterator[Jobs]:
    config_path.write_text(CONFIG)
    j = Jobs(redis_url, config_path, env={"JOBYARD_EXPORT_DIR": str(export_dir)})
    yield j
    j.close()


@pytest.fixture
def worker(spawn: Any, jobs: Jobs, export_dir: Path) -> Any:
    return start_worker(spawn, "reports", env={"JOBYARD_EXPORT_DIR": str(export_dir)})


def sample_rows(n: int) -> list[dict[str, Any]]:
    rows: list[dict[str, Any]] = []
    for i in range(n):
        rows.append(
            {
                "id": i,
                "name": f'Customer "{i}", Ltd.\nBranch é' if i % 7 == 0 else f"customer {i}",
                "total": i * 1.25,
                "active": i % 2 == 0,
                "note": None if i % 3 else "vip",
                "tags": ["a", i] if i % 5 == 0 else [],
            }
        )
    return rows


def write_jsonl(path: Path, rows: list[dict[str, Any]]) -> None:
    with path.open("w", encoding="utf-8") as f:
        for row in rows:
            f.write(json.dumps(row, ensure_ascii=False) + "\n")


def write_big(path: Path, n: int = BIG_ROWS) -> None:
    with path.open("w", encoding="utf-8") as f:
        for i in range(n):
            f.write(f'{{"id": {i}, "name": "row {i}", "value": {i * 3}}}\n')


def expected_cells(row: dict[str, Any]) -> list[str]:
    """How the CSV must show a sample row, written out independently of the job's code."""
    return [
        str(row["id"]),
        row["name"],
        repr(row["total"]),
        "true" if row["active"] else "false",
        "" if row["note"] is None else row["note"],
        json.dumps(row["tags"], separators=(",", ":")),
    ]


def leftovers(export_dir: Path) -> list[str]:
    return sorted(p.name for p in export_dir.iterdir() if p.name.endswith(".part"))


def test_worker_exports_rows_that_read_back_equal(
    worker: Any, jobs: Jobs, export_dir: Path
) -> None:
    rows = sample_rows(3000)
    write_jsonl(export_dir / "inputs" / "customers.jsonl", rows)
    job_id = jobs.enqueue(
        "report.export", {"source": "inputs/customers.jsonl", "output": "customers.csv"}
    )
    rec = jobs.wait(job_id)
    assert rec.state is JobState.SUCCEEDED, rec.error
    out = export_dir / "customers.csv"
    assert rec.result == {
        "path": str(out.resolve()),
        "rows": 3000,
        "bytes": out.stat().st_size,
    }
    with out.open(newline="", encoding="utf-8") as f:
        read = list(csv.reader(f))
    assert read[0] == ["id", "name", "total", "active", "note", "tags"]
    assert read[1:] == [expected_cells(r) for r in rows]
    assert rec.progress is not None
    assert (rec.progress.current, rec.progress.total) == (3000, 3000)
    assert rec.progress.message == "3000 rows written"
    assert leftovers(export_dir) == []


def test_columns_delimiter_and_blank_lines(jobs: Jobs, export_dir: Path) -> None:
    (export_dir / "in.jsonl").write_text(
        '{"a": 1, "b": "x;y", "c": 3}\n\n{"b": "z", "extra": true}\n   \n'
    )
    args = ExportArgs(source="in.jsonl", output="picked.csv", columns=["c", "b"], delimiter=";")
    result = export(jobs.context("report.export"), args)
    assert result["rows"] == 2
    assert (export_dir / "picked.csv").read_bytes() == b'c;b\r\n3;"x;y"\r\n;z\r\n'
    rec = jobs.client.hget(keys.job("job-1"), "progress")
    assert rec is not None
    assert json.loads(rec) == {"current": 4, "total": 4, "message": "2 rows written"}


def test_progress_is_visible_while_it_runs(worker: Any, jobs: Jobs, export_dir: Path) -> None:
    write_big(export_dir / "inputs" / "big.jsonl")
    job_id = jobs.enqueue("report.export", {"source": "inputs/big.jsonl", "output": "big.csv"})

    def midway(r: JobRecord) -> bool:
        p = r.progress
        return r.state is JobState.STARTED and p is not None and 0 < p.current < BIG_ROWS

    seen = jobs.wait(job_id, midway)
    assert seen.progress is not None
    assert seen.progress.total == BIG_ROWS
    assert seen.progress.message == f"{int(seen.progress.current)} rows written"
    done = jobs.wait(job_id)
    assert done.state is JobState.SUCCEEDED, done.error
    assert done.result["rows"] == BIG_ROWS
    with (export_dir / "big.csv").open(newline="") as f:
        assert sum(1 for _ in f) == BIG_ROWS + 1


def test_cancel_mid_run_removes_the_partial_file(worker: Any, jobs: Jobs, export_dir: Path) -> None:
    write_big(export_dir / "inputs" / "big.jsonl")
    (export_dir / "big.csv").write_text("previous export\n")
    job_id = jobs.enqueue("report.export", {"source": "inputs/big.jsonl", "output": "big.csv"})
    jobs.wait(job_id, lambda r: r.progress is not None and r.progress.current > 0)
    assert len(leftovers(export_dir)) == 1  # the temporary file being written
    jobs.client.hset(keys.job(job_id), "cancel_requested", "1")
    rec = jobs.wait(job_id)
    assert rec.state is JobState.CANCELLED
    assert rec.attempts == 1
    assert rec.error is not None
    assert rec.error.type == "JobCancelled"
    assert rec.error.message.startswith("cancelled at line ")
    assert rec.error.message.endswith(f" of {BIG_ROWS}; the partial file was removed")
    assert leftovers(export_dir) == []
    assert (export_dir / "big.csv").read_text() == "previous export\n"


def test_bad_json_line_fails_naming_the_line(worker: Any, jobs: Jobs, export_dir: Path) -> None:
    (export_dir / "inputs" / "bad.jsonl").write_text('{"a": 1}\n{"a": 2}\n{"a": 3,,}\n{"a": 4}\n')
    job_id = jobs.enqueue("report.export", {"source": "inputs/bad.jsonl", "output": "bad.csv"})
    rec = jobs.wait(job_id)
    assert rec.state is JobState.FAILED
    assert rec.attempts == 1
    assert rec.error is not None
    assert rec.error.message.startswith("inputs/bad.jsonl: line 3 is not valid JSON: ")
    assert not (export_dir / "bad.csv").exists()
    assert leftovers(export_dir) == []


def test_traversal_is_refused_before_and_when_run(
    worker: Any, jobs: Jobs, export_dir: Path
) -> None:
    for source in ("../etc/passwd", "/etc/passwd"):
        with pytest.raises(ValidationError) as info:
            jobs.enqueue("report.export", {"source": source, "output": "x.csv"})
        assert info.value.errors()[0]["loc"] == ("source",)
    # A producer that skips validation still cannot make a worker read the file.
    job_id = jobs.enqueue_unchecked(
        "report.export", {"source": "../../etc/passwd", "output": "x.csv"}, "reports"
    )
    rec = jobs.wait(job_id)
    assert rec.state is JobState.FAILED
    assert rec.attempts == 1
    assert rec.error is not None
    assert rec.error.type == "JobArgumentsError"
    assert "source" in rec.error.message
    assert "must not contain '..'" in rec.error.message
    assert not (export_dir / "x.csv").exists()


def test_symlink_out_of_the_export_dir_is_refused(
    jobs: Jobs, export_dir: Path, tmp_path: Path
) -> None:
    secret = tmp_path / "secret.jsonl"
    secret.write_text('{"password": "hunter2"}\n')
    (export_dir / "inputs" / "link.jsonl").symlink_to(secret)
    args = ExportArgs(source="inputs/link.jsonl", output="leak.csv")
    with pytest.raises(PermanentError, match=r"'inputs/link\.jsonl': 'link\.jsonl' is a symbol"):
        export(jobs.context("report.export"), args)
    with pytest.raises(PermanentError, match=r"'inputs/missing\.jsonl' is not a file"):
        export(
            jobs.context("report.export"), ExportArgs(source="inputs/missing.jsonl", output="m.csv")
        )
    assert not (export_dir / "leak.csv").exists()


@pytest.mark.parametrize(
    ("content", "message"),
    [
        ('{"a": 1}\n[1, 2]\n', "in.jsonl: line 2 is a JSON list, not an object"),
        ('{"a": 1}\n{"a": 2, "b": 3}\n', "in.jsonl: line 2 has key 'b', which the first row lacks"),
        ('{"a": NaN}\n', "in.jsonl: line 1 is not valid JSON: NaN is not valid JSON"),
    ],
)
def test_rows_that_cannot_be_exported_fail_and_keep_the_old_file(
    jobs: Jobs, export_dir: Path, content: str, message: str
) -> None:
    (export_dir / "in.jsonl").write_text(content)
    (export_dir / "out.csv").write_text("old\n")
    with pytest.raises(PermanentError) as info:
        export(jobs.context("report.export"), ExportArgs(source="in.jsonl", output="out.csv"))
    assert str(info.value).startswith(message)
    assert (export_dir / "out.csv").read_text() == "old\n"
    assert leftovers(export_dir) == []


def _plant(kind: str, at: Path, outside: Path) -> None:
    if kind == "symlink":
        at.symlink_to(outside)
    else:
        at.hardlink_to(outside)


LINK_REASONS = {
    "symlink": "is a symbolic link",
    "hardlink": "has 2 hard links (another name, maybe outside the directory, shares its content)",
}


@pytest.mark.parametrize("kind", ["symlink", "hardlink"])
def test_a_link_planted_at_the_temporary_file_fails_the_job_and_writes_nothing_outside(
    worker: Any, jobs: Jobs, export_dir: Path, tmp_path: Path, kind: str
) -> None:
    outside = tmp_path / "outside.txt"
    outside.write_text("precious\n")
    write_jsonl(export_dir / "inputs" / "in.jsonl", [{"a": "=evil()"}])
    job_id = "planted-" + kind
    part = export_dir / part_name("out.csv", job_id)
    _plant(kind, part, outside)
    enqueued = jobs.enqueue(
        "report.export", {"source": "inputs/in.jsonl", "output": "out.csv"}, job_id=job_id
    )
    assert enqueued == job_id
    rec = jobs.wait(job_id)
    assert rec.state is JobState.FAILED
    assert rec.attempts == 1, "refused, not retried"
    assert rec.error is not None
    assert rec.error.type == "PermanentError"
    assert rec.error.message == (
        f"refused a file in the export directory {export_dir.resolve()}: "
        f"{part.name!r} {LINK_REASONS[kind]}"
    )
    assert outside.read_text() == "precious\n"
    assert not (export_dir / "out.csv").exists()


@pytest.mark.parametrize("kind", ["symlink", "hardlink"])
def test_a_link_planted_at_the_output_is_refused(
    jobs: Jobs, export_dir: Path, tmp_path: Path, kind: str
) -> None:
    outside = tmp_path / "outside.txt"
    outside.write_text("precious\n")
    write_jsonl(export_dir / "in.jsonl", [{"a": 1}])
    _plant(kind, export_dir / "out.csv", outside)
    with pytest.raises(PermanentError) as info:
        export(jobs.context("report.export"), ExportArgs(source="in.jsonl", output="out.csv"))
    assert str(info.value).endswith(f"'out.csv' {LINK_REASONS[kind]}")
    assert outside.read_text() == "precious\n"
    assert leftovers(export_dir) == []
    assert (export_dir / "out.csv").is_symlink() == (kind == "symlink")


def test_a_hard_linked_source_or_a_linked_directory_is_refused(
    jobs: Jobs, export_dir: Path, tmp_path: Path
) -> None:
    secret = tmp_path / "secret.jsonl"
    secret.write_text('{"password": "hunter2"}\n')
    (export_dir / "inputs" / "copy.jsonl").hardlink_to(secret)
    with pytest.raises(PermanentError, match=r"'inputs/copy\.jsonl' has 2 hard links"):
        export(
            jobs.context("report.export"), ExportArgs(source="inputs/copy.jsonl", output="c.csv")
        )
    (export_dir / "via").symlink_to(tmp_path)
    with pytest.raises(PermanentError, match=r"'via/secret\.jsonl': 'via' is not a directory"):
        export(jobs.context("report.export"), ExportArgs(source="via/secret.jsonl", output="c.csv"))
    assert not (export_dir / "c.csv").exists()


FORMULAS = ["=1+2", "+SUM(A1)", "-2+3", "@cmd", "\tx", "\rx"]


@pytest.mark.parametrize("escape", [True, False])
def test_cells_that_could_run_as_formulas_are_escaped_unless_turned_off(
    jobs: Jobs, export_dir: Path, escape: bool
) -> None:
    rows = [{"=key": value, "n": -5, "plain": "a=b"} for value in FORMULAS]
    write_jsonl(export_dir / "in.jsonl", rows)
    args = ExportArgs(source="in.jsonl", output="f.csv", escape_formulas=escape)
    export(jobs.context("report.export"), args)
    with (export_dir / "f.csv").open(newline="", encoding="utf-8") as f:
        read = list(csv.reader(f))
    prefix = "'" if escape else ""
    assert read[0] == [prefix + "=key", "n", "plain"]
    assert read[1:] == [[prefix + value, "-5", "a=b"] for value in FORMULAS]
