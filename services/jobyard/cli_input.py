"""Parsing what people type into client commands: `--arg k=v`, `--args-json`, `--delay`.

Each parser raises :class:`ValueError` with a message that says what was given and what is
allowed; the command turns it into a usage error naming the flag.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable
from typing import Any

_DURATION_PART = re.compile(r"(\d+(?:\.\d+)?)(ms|s|m|h|d)")
_UNIT_S = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0, "d": 86400.0}
DURATION_HELP = "seconds, or a duration such as 30s, 5m, 1h, 1h30m"


def parse_duration_s(text: str) -> float:
    """`"90"` → 90.0, `"1h30m"` → 5400.0; negative, empty or unknown units are refused."""
    raw = text.strip().lower()
    try:
        plain = float(raw)
    except ValueError:
        pass
    else:
        if plain < 0 or plain != plain or plain == float("inf"):
            raise ValueError(f"{text!r} is not a duration; use {DURATION_HELP}")
        return plain
    pos = 0
    total = 0.0
    for match in _DURATION_PART.finditer(raw):
        if match.start() != pos:
            break
        total += float(match.group(1)) * _UNIT_S[match.group(2)]
        pos = match.end()
    if not raw or pos != len(raw):
        raise ValueError(f"{text!r} is not a duration; use {DURATION_HELP}")
    return total


def format_duration_s(seconds: float) -> str:
    """A short human duration: `4ms`, `1.5s`, `12s`, `3m12s`, `2h05m`, `3d04h`."""
    if seconds <= 0:
        return "0s"
    if seconds < 1:
        return f"{seconds * 1000:.0f}ms"
    if seconds < 10:
        return f"{seconds:.1f}s".replace(".0s", "s")
    whole = int(seconds)
    if whole < 60:
        return f"{whole}s"
    if whole < 3600:
        return f"{whole // 60}m{whole % 60:02d}s"
    if whole < 86400:
        return f"{whole // 3600}h{whole % 3600 // 60:02d}m"
    return f"{whole // 86400}d{whole % 86400 // 3600:02d}h"


def _refuse_constant(name: str) -> Any:
    raise ValueError(name)


def parse_value(text: str) -> Any:
    """A `--arg` value: JSON when it parses (`3`, `true`, `[1,2]`, `{"a":1}`), else the text.

    `NaN` and `Infinity` stay strings: they are not JSON.
    """
    try:
        return json.loads(text, parse_constant=_refuse_constant)
    except ValueError:
        return text


def parse_arg_pairs(pairs: Iterable[str]) -> dict[str, Any]:
    """`["to=a@b.c", "retries=3", "opts.dry_run=true"]` → a nested arguments dict."""
    out: dict[str, Any] = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep:
            raise ValueError(f"expected KEY=VALUE, got {pair!r}")
        path = key.strip().split(".")
        if any(not part for part in path):
            raise ValueError(f"expected KEY=VALUE with a non-empty key, got {pair!r}")
        node = out
        for depth, part in enumerate(path[:-1]):
            child = node.setdefault(part, {})
            if not isinstance(child, dict):
                where = ".".join(path[: depth + 1])
                raise ValueError(f"{key!r} nests under {where!r}, which already has a value")
            node = child
        leaf = path[-1]
        if isinstance(node.get(leaf), dict):
            raise ValueError(f"{key!r} is given a value and also nested keys")
        node[leaf] = parse_value(value)
    return out


def parse_args_json(text: str) -> dict[str, Any]:
    """The `--args-json` object."""
    try:
        value = json.loads(text, parse_constant=_refuse_constant)
    except ValueError as exc:
        raise ValueError(f"not valid JSON: {exc}") from exc
    if not isinstance(value, dict):
        raise ValueError(f"must be a JSON object, got {type(value).__name__}")
    return value


def merge_args(base: dict[str, Any], override: dict[str, Any]) -> dict[str, Any]:
    """`override` on top of `base`, merging nested objects key by key."""
    out = dict(base)
    for key, value in override.items():
        if isinstance(value, dict) and isinstance(out.get(key), dict):
            out[key] = merge_args(out[key], value)
        else:
            out[key] = value
    return out
