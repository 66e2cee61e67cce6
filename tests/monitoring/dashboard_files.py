"""The committed Grafana dashboards as data, and every query in them."""

from __future__ import annotations

import importlib.util
import json
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType
from typing import Any

from tests.monitoring.alert_rules import DASHBOARDS_DIR, ROOT
from tests.monitoring.promql import metric_names

GENERATOR = ROOT / "deploy" / "monitoring" / "dashboards.py"


def load_generator() -> ModuleType:
    """deploy/monitoring/dashboards.py as a module (it is a script, not a package)."""
    spec = importlib.util.spec_from_file_location("jobyard_dashboards_generator", GENERATOR)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module


EXTERNAL_METRICS: dict[str, str] = load_generator().EXTERNAL_METRICS
"""The allow-list of series the dashboards may use that jobyard does not export, with who
exports them (defined next to the dashboards, in the generator)."""


@dataclass(frozen=True)
class Query:
    dashboard: str
    panel: str
    expr: str

    @property
    def external_sources(self) -> set[str]:
        """Who exports the non-jobyard series this query needs (empty: jobyard only)."""
        return {EXTERNAL_METRICS[n] for n in metric_names(self.expr) if n in EXTERNAL_METRICS}


def dashboard_paths() -> list[Path]:
    return sorted(DASHBOARDS_DIR.glob("*.json"))


def load_dashboards() -> dict[str, dict[str, Any]]:
    """uid -> dashboard JSON."""
    result: dict[str, dict[str, Any]] = {}
    for path in dashboard_paths():
        data = json.loads(path.read_text(encoding="utf-8"))
        result[data["uid"]] = data
    return result


def panels(dashboard: dict[str, Any]) -> Iterator[dict[str, Any]]:
    """Every panel that is not a row (rows' nested panels included)."""
    for panel in dashboard["panels"]:
        if panel["type"] == "row":
            yield from panel.get("panels", [])
        else:
            yield panel


def queries() -> list[Query]:
    """Every panel query of every dashboard."""
    found: list[Query] = []
    for uid, dashboard in load_dashboards().items():
        for panel in panels(dashboard):
            for target in panel.get("targets", []):
                found.append(Query(uid, panel["title"], target["expr"]))
    return found


def variable_queries(dashboard: dict[str, Any]) -> dict[str, str]:
    """name -> query of the dashboard's query variables."""
    result: dict[str, str] = {}
    for variable in dashboard["templating"]["list"]:
        if variable["type"] == "query":
            query = variable["query"]
            result[variable["name"]] = query["query"] if isinstance(query, dict) else query
    return result
