"""The series names jobyard exports, read from `jobyard.observability.metrics`.

That module is the single source of metric names. The names are collected in a fresh
interpreter: creating jobyard's metric objects in the test process would register them
in prometheus-client's global registry before a test that needs multiprocess mode.
"""

from __future__ import annotations

import json
import re
import subprocess
import sys
from functools import cache

from jobyard.observability.metrics import SCRAPE_TIME_GAUGES

_SCRIPT = r"""
import inspect, json, typing
from prometheus_client import Counter, Gauge, Histogram, Summary
from jobyard.observability import metrics as m

families = {}

def add_spec(value):
    if isinstance(value, m.GaugeSpec):
        families[value.name] = "gauge"
    elif isinstance(value, dict):
        for item in value.values():
            add_spec(item)
    elif isinstance(value, (tuple, list)):
        for item in value:
            add_spec(item)

for name, value in vars(m).items():
    add_spec(value)
    if inspect.isfunction(value) and value.__module__ == m.__name__:
        returns = typing.get_type_hints(value).get("return")
        required = [
            p for p in inspect.signature(value).parameters.values()
            if p.default is inspect.Parameter.empty
        ]
        if returns in (Counter, Gauge, Histogram, Summary) and not required:
            for family in value().describe():
                families[family.name] = family.type
print(json.dumps(families))
"""

SUFFIXES = {
    "counter": ("_total",),
    "gauge": ("",),
    "histogram": ("_bucket", "_count", "_sum"),
    "summary": ("", "_count", "_sum"),
    "info": ("_info",),
}


@cache
def metric_families() -> dict[str, str]:
    """Family name -> type (`counter`, `gauge`, `histogram`, ...)."""
    done = subprocess.run(
        [sys.executable, "-c", _SCRIPT], capture_output=True, text=True, timeout=60, check=False
    )
    if done.returncode != 0:
        raise AssertionError(
            "cannot list jobyard's metrics from jobyard.observability.metrics:\n" + done.stderr
        )
    families: dict[str, str] = json.loads(done.stdout)
    return families


@cache
def jobyard_series_names() -> frozenset[str]:
    """Every series name jobyard's processes can expose (`_total`, `_bucket`, ...)."""
    return frozenset(
        name + suffix for name, kind in metric_families().items() for suffix in SUFFIXES[kind]
    )


_SUMMED_GAUGE = re.compile(
    r"\b(sum|count|avg)\b(\s+(by|without)\s*\([^)]*\))?\s*\(\s*(?P<name>jobyard_\w+)"
)


def summed_scrape_time_gauges(expr: str) -> set[str]:
    """Scrape-time gauges that `expr` sums, counts or averages.

    Every API replica exports the same queue-state values: summing them counts the queue
    once per replica. (Importing the module's constants creates no metric.)
    """
    found = {m["name"] for m in _SUMMED_GAUGE.finditer(expr)}
    return found & {spec.name for spec in SCRAPE_TIME_GAUGES}
