"""Chart fixtures: one render per values set per session (the matrix), shared by tests."""

from __future__ import annotations

import shutil
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from tests.chart.rendering import CHART_DIR, Rendered, load_values, render

# The values matrix. Each file in tests/chart/values/ is one realistic installation.
MATRIX = [
    "defaults",
    "priorities",
    "keda-off",
    "keda-off-cpu-hpa",
    "external-redis-tls",
    "monitoring",
    "network-policy",
    "worker-egress",
    "flower",
    "rich",
    "deploy-dev",
    "deploy-dev-monitoring",
    "deploy-prod-example",
]

PLACEHOLDER_RULES = """groups:
  - name: jobyard-placeholder
    rules:
      - alert: JobyardPlaceholder
        expr: vector(1) == 0
        labels: {severity: info}
        annotations:
          summary: placeholder
          runbook_url: https://github.com/jobyard/jobyard/blob/main/docs/runbooks/x.md#x
          dashboard_url: https://grafana.example.com/d/jobyard-queue
"""
PLACEHOLDER_DASHBOARD = '{"uid": "jobyard-placeholder", "title": "placeholder", "panels": []}\n'


@pytest.fixture(scope="session")
def chart_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A copy of the chart. The alert rules and dashboards are another component's files:
    when they are not there yet, the copy gets a tiny placeholder (never the real folders)."""
    copy = tmp_path_factory.mktemp("chart") / "jobyard"
    shutil.copytree(CHART_DIR, copy)
    rules = copy / "files" / "prometheus" / "jobyard-alerts.yaml"
    if not rules.exists():
        rules.parent.mkdir(parents=True, exist_ok=True)
        rules.write_text(PLACEHOLDER_RULES, encoding="utf-8")
    dashboards = copy / "files" / "dashboards"
    if not list(dashboards.glob("*.json")):
        dashboards.mkdir(parents=True, exist_ok=True)
        (dashboards / "jobyard-placeholder.json").write_text(
            PLACEHOLDER_DASHBOARD, encoding="utf-8"
        )
    return copy


@pytest.fixture(scope="session")
def rendered(chart_dir: Path) -> Callable[[str], Rendered]:
    """`rendered("rich")`: the render of tests/chart/values/rich.yaml, made once."""
    cache: dict[str, Rendered] = {}

    def get(name: str) -> Rendered:
        if name not in cache:
            cache[name] = render(chart_dir, load_values(name))
        return cache[name]

    return get


@pytest.fixture(scope="session")
def render_with(chart_dir: Path) -> Callable[[dict[str, Any]], Rendered]:
    """Render ad-hoc values (for a single test's variation)."""

    def do(values: dict[str, Any]) -> Rendered:
        return render(chart_dir, values)

    return do
