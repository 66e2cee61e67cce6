"""Output formats of every command: `table` for people, `json` and `yaml` for scripts."""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any

import click
import yaml

FORMATS = ("table", "json", "yaml")


def emit(data: Any, fmt: str) -> None:
    """`data` (JSON types) as JSON or YAML on stdout."""
    if fmt == "json":
        click.echo(json.dumps(data, indent=2))
    elif fmt == "yaml":
        click.echo(yaml.safe_dump(data, sort_keys=False, allow_unicode=True), nl=False)
    else:
        raise ValueError(f"not a data format: {fmt}")


def table(
    headers: Sequence[str], rows: Sequence[Sequence[str]], right: set[int] | None = None
) -> str:
    """A kubectl-style table: upper-case headers, columns three spaces apart."""
    right = right or set()
    widths = [len(h) for h in headers]
    for row in rows:
        widths = [max(w, len(cell)) for w, cell in zip(widths, row, strict=True)]
    lines = []
    for row in [list(headers), *rows]:
        cells = [
            cell.rjust(width) if i in right else cell.ljust(width)
            for i, (cell, width) in enumerate(zip(row, widths, strict=True))
        ]
        lines.append("   ".join(cells).rstrip())
    return "\n".join(lines)


def duration(seconds: float | None) -> str:
    """`45s`, `3m`, `2h5m`, `3d`, or `-`: kubectl's AGE style."""
    if seconds is None:
        return "-"
    s = max(0, int(seconds))
    if s < 120:
        return f"{s}s"
    if s < 3600:
        return f"{s // 60}m"
    if s < 86400:
        hours, minutes = divmod(s // 60, 60)
        return f"{hours}h{minutes}m" if minutes else f"{hours}h"
    return f"{s // 86400}d"
