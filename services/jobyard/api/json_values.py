"""JSON values a request may carry but the job store and the workers cannot: found and named.

Two kinds get past a JSON parser and the task's argument schema, and fail later:

- a lone surrogate (`"\\ud800"`): valid JSON escapes, but not a character, so the
  record or the message cannot be encoded as UTF-8 when the job is stored or run;
- an integer of more digits than Python converts (`sys.get_int_max_str_digits()`, 4300 by
  default): the stdlib parser refuses the whole body without saying where.

Both are located as a field path in the style of the API's problems (`args.x[1].y`).
Walks are iterative, so a deeply nested value cannot exhaust the stack.
"""

from __future__ import annotations

import json
import sys
from typing import Any

_MAX_DIGITS_FALLBACK = 4300


def _sub(path: str, part: str | int) -> str:
    return f"{path}[{part}]" if isinstance(part, int) else (f"{path}.{part}" if path else part)


def _children(value: Any) -> list[tuple[str | int, Any]]:
    if isinstance(value, dict):
        return list(value.items())
    if isinstance(value, list | tuple):
        return list(enumerate(value))
    return []


def has_lone_surrogate(text: str) -> bool:
    """Whether `text` holds a surrogate code point (not encodable as UTF-8)."""
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return True
    return False


def find_lone_surrogate(value: Any) -> tuple[str, str] | None:
    """(path relative to `value`, what) of the first string or key holding a lone
    surrogate; None when there is none. A key is reported at the path of its object."""
    stack: list[tuple[str, Any]] = [("", value)]
    while stack:
        path, item = stack.pop()
        if isinstance(item, str):
            if has_lone_surrogate(item):
                return path, "the string holds a lone surrogate"
            continue
        if isinstance(item, dict):
            for key in item:
                if isinstance(key, str) and has_lone_surrogate(key):
                    return path, "an object key holds a lone surrogate"
        children = _children(item)
        stack.extend((_sub(path, k), v) for k, v in reversed(children))
    return None


def max_int_digits() -> int:
    """The most digits Python converts to an int (0, unlimited, counts as the default)."""
    return sys.get_int_max_str_digits() or _MAX_DIGITS_FALLBACK


class _TooLong:
    """Stands for an integer literal over :func:`max_int_digits` while re-parsing."""

    def __init__(self, digits: int) -> None:
        self.digits = digits


def find_oversized_int(body: bytes) -> tuple[str, int] | None:
    """(field path, digits) of the first integer literal in the JSON `body` longer than
    :func:`max_int_digits`; None when there is none or the body is not such JSON."""
    limit = max_int_digits()

    def parse_int(literal: str) -> Any:
        digits = len(literal.lstrip("-"))
        return _TooLong(digits) if digits > limit else int(literal)

    try:
        value = json.loads(body, parse_int=parse_int)
    except (ValueError, RecursionError):
        return None
    stack: list[tuple[str, Any]] = [("", value)]
    while stack:
        path, item = stack.pop()
        if isinstance(item, _TooLong):
            return path or "body", item.digits
        stack.extend((_sub(path, k), v) for k, v in reversed(_children(item)))
    return None
