"""Just enough PromQL lexing to list the metric names an expression selects.

Parsing proper is left to Prometheus (`promtool check rules`, a real server's query API);
this only has to find selectors: identifiers that are not functions, aggregations,
keywords, label names or inside strings, label matchers or ranges.
"""

from __future__ import annotations

import re

GROUPING = frozenset({"by", "without", "on", "ignoring", "group_left", "group_right"})
AGGREGATIONS = frozenset(
    {
        "sum", "min", "max", "avg", "group", "stddev", "stdvar", "count", "count_values",
        "bottomk", "topk", "quantile",
    }
)  # fmt: skip
KEYWORDS = frozenset({"and", "or", "unless", "bool", "offset", "inf", "nan", "atan2"})

_IDENT_START = re.compile(r"[A-Za-z_:]")
_IDENT = re.compile(r"[A-Za-z_:][A-Za-z0-9_:]*")
_NUMBER = re.compile(r"[0-9.][0-9A-Za-z.+-]*")
_VARIABLE = re.compile(r"\$\{?([A-Za-z_][A-Za-z0-9_]*)\}?")


class PromQLLexError(ValueError):
    """The expression is not balanced (an unclosed string, brace or bracket)."""


def _skip_string(expr: str, i: int) -> int:
    quote = expr[i]
    j = i + 1
    while j < len(expr):
        if expr[j] == "\\" and quote != "`":
            j += 2
            continue
        if expr[j] == quote:
            return j + 1
        j += 1
    raise PromQLLexError(f"unclosed string at {i} in {expr!r}")


def _skip_to(expr: str, i: int, close: str) -> int:
    """Index after the `close` matching the opener at `i` (strings inside skipped)."""
    j = i + 1
    while j < len(expr):
        c = expr[j]
        if c in "\"'`":
            j = _skip_string(expr, j)
            continue
        if c == close:
            return j + 1
        j += 1
    raise PromQLLexError(f"unclosed {expr[i]!r} at {i} in {expr!r}")


def _next_char(expr: str, i: int) -> str:
    while i < len(expr) and expr[i].isspace():
        i += 1
    return expr[i] if i < len(expr) else ""


def metric_names(expr: str) -> set[str]:
    """Metric names selected by `expr` (bare `{__name__=...}` selectors are rejected)."""
    if "__name__" in expr:
        raise PromQLLexError(f"select metrics by name, not with __name__: {expr!r}")
    names: set[str] = set()
    i = 0
    while i < len(expr):
        c = expr[i]
        if c in "\"'`":
            i = _skip_string(expr, i)
        elif c == "{":
            i = _skip_to(expr, i, "}")
        elif c == "[":
            i = _skip_to(expr, i, "]")
        elif c == "#":
            newline = expr.find("\n", i)
            i = len(expr) if newline < 0 else newline
        elif c.isdigit() or (c == "." and i + 1 < len(expr) and expr[i + 1].isdigit()):
            match = _NUMBER.match(expr, i)
            assert match is not None
            i = match.end()
        elif _IDENT_START.match(c):
            match = _IDENT.match(expr, i)
            assert match is not None
            word, i = match.group(), match.end()
            following = _next_char(expr, i)
            lowered = word.lower()
            if lowered in GROUPING:
                if following == "(":
                    i = _skip_to(expr, expr.index("(", i), ")")
            elif following == "(" or lowered in AGGREGATIONS or lowered in KEYWORDS:
                continue
            else:
                names.add(word)
        else:
            i += 1
    return names


def template_variables(expr: str) -> set[str]:
    """Grafana variables used in `expr` (`$queue`, `${datasource}`, `$__rate_interval`)."""
    return {m.group(1) for m in _VARIABLE.finditer(expr)}


GRAFANA_SUBSTITUTIONS = {
    "__rate_interval": "5m",
    "__interval": "1m",
    "__range": "1h",
    "namespace": ".*",
    "queue": "default",
}
"""Values that make a dashboard query plain PromQL: what Grafana would send."""


def substitute_variables(expr: str, values: dict[str, str] = GRAFANA_SUBSTITUTIONS) -> str:
    """`expr` with Grafana variables replaced; KeyError names an unknown variable."""
    return _VARIABLE.sub(lambda m: values[m.group(1)], expr)
