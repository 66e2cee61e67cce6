"""report.export's pure parts: argument validation, cells, line counting."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from pydantic import ValidationError

from jobyard.jobs.report import ExportArgs, cell, count_lines, text_cell

VALID: dict[str, Any] = {"source": "inputs/orders.jsonl", "output": "orders.csv"}


def _error(raw: dict[str, Any]) -> str:
    with pytest.raises(ValidationError) as info:
        ExportArgs.model_validate(raw)
    return str(info.value)


@pytest.mark.parametrize(
    ("source", "reason"),
    [
        ("../etc/passwd", "must not contain '..'"),
        ("inputs/../../etc/passwd", "must not contain '..'"),
        ("/etc/passwd", "not an absolute path"),
        ("//etc/passwd", "not an absolute path"),
        ("inputs\\..\\x", "no backslash"),
        ("a\0b", "no NUL"),
        (".", "must name a file"),
        ("./", "must name a file"),
        ("", "at least 1 character"),
    ],
)
def test_source_outside_the_export_dir_is_refused(source: str, reason: str) -> None:
    msg = _error({**VALID, "source": source})
    assert "source" in msg
    assert reason in msg


@pytest.mark.parametrize("source", ["orders.jsonl", "inputs/2024/05/orders.jsonl", "a..b.jsonl"])
def test_relative_sources_are_accepted(source: str) -> None:
    assert ExportArgs.model_validate({**VALID, "source": source}).source == source


@pytest.mark.parametrize(
    "output", ["../x.csv", "dir/x.csv", "x.txt", ".hidden.csv", "x .csv", "x.csv/", "x.CSV"]
)
def test_output_must_be_a_plain_csv_file_name(output: str) -> None:
    msg = _error({**VALID, "output": output})
    assert "output" in msg
    assert "String should match pattern" in msg


def test_columns_and_delimiter_are_checked() -> None:
    assert "repeated: id" in _error({**VALID, "columns": ["id", "name", "id"]})
    assert "columns" in _error({**VALID, "columns": []})
    assert "delimiter" in _error({**VALID, "delimiter": ":"})
    assert "Extra inputs are not permitted" in _error({**VALID, "path": "/x"})
    args = ExportArgs.model_validate({**VALID, "columns": ["b", "a"], "delimiter": "\t"})
    assert ExportArgs.model_validate(args.model_dump(mode="json")) == args


@pytest.mark.parametrize(
    ("value", "text"),
    [
        (None, ""),
        ('a, "quoted"\nline', 'a, "quoted"\nline'),
        (True, "true"),
        (False, "false"),
        (0, "0"),
        (12345678901234567890, "12345678901234567890"),
        (2.5, "2.5"),
        (1e100, "1e+100"),
        ({"k": [1, "é"]}, '{"k":[1,"é"]}'),
        ([], "[]"),
    ],
)
def test_cells(value: Any, text: str) -> None:
    assert cell(value) == text


@pytest.mark.parametrize(
    ("content", "lines"), [(b"", 0), (b"{}\n", 1), (b"{}\n{}", 2), (b"\n\n\n", 3), (b"{}", 1)]
)
def test_count_lines(tmp_path: Path, content: bytes, lines: int) -> None:
    path = tmp_path / "f.jsonl"
    path.write_bytes(content)
    with path.open("rb") as f:
        assert count_lines(f) == lines


@pytest.mark.parametrize(
    ("value", "escaped"),
    [
        ('=HYPERLINK("http://x")', '\'=HYPERLINK("http://x")'),
        ("+1+2", "'+1+2"),
        ("-2+3", "'-2+3"),
        ("@SUM(A1)", "'@SUM(A1)"),
        ("\tx", "'\tx"),
        ("\rx", "'\rx"),
        ("a=b", "a=b"),
        ("", ""),
    ],
)
def test_text_cells_that_could_run_as_formulas_are_escaped(value: str, escaped: str) -> None:
    assert text_cell(value, escape_formulas=True) == escaped
    assert text_cell(value, escape_formulas=False) == value
    assert ExportArgs.model_validate(VALID).escape_formulas is True
