"""The Grafana dashboards: generated without drift, wired to the datasource variable, and
every query parsed by a real Prometheus and made of metrics jobyard (or a named
third party) exports."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from tests.monitoring.alert_rules import DASHBOARDS_DIR
from tests.monitoring.dashboard_files import (
    EXTERNAL_METRICS,
    GENERATOR,
    dashboard_paths,
    load_dashboards,
    panels,
    queries,
    variable_queries,
)
from tests.monitoring.exported_metrics import jobyard_series_names, summed_scrape_time_gauges
from tests.monitoring.prometheus_server import PrometheusServer
from tests.monitoring.promql import metric_names, substitute_variables, template_variables

DATASOURCE = {"type": "prometheus", "uid": "${datasource}"}
UIDS = {"jobyard-overview", "jobyard-queue", "jobyard-api"}
BUILTIN_VARIABLES = {"__rate_interval", "__interval", "__range"}


def generate(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, str(GENERATOR), *args],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def test_committed_json_is_what_the_generator_makes() -> None:
    done = generate("--check")
    assert done.returncode == 0, done.stderr


def test_check_fails_and_names_the_file_that_drifted(tmp_path: Path) -> None:
    assert generate("--out", str(tmp_path)).returncode == 0
    assert generate("--check", "--out", str(tmp_path)).returncode == 0
    edited = tmp_path / "jobyard-queue.json"
    edited.write_text(edited.read_text().replace("jobyard_queue_depth", "jobyard_queue_size"))
    done = generate("--check", "--out", str(tmp_path))
    assert done.returncode == 1
    assert str(edited) in done.stderr
    assert "jobyard-api.json" not in done.stderr


def test_fixed_uids_one_file_each() -> None:
    dashboards = load_dashboards()
    assert set(dashboards) == UIDS
    assert sorted(p.name for p in dashboard_paths()) == sorted(f"{uid}.json" for uid in UIDS)
    for uid, dashboard in dashboards.items():
        assert dashboard["schemaVersion"] == 39
        assert dashboard["title"].startswith("jobyard / ")
        assert dashboard["tags"] == ["jobyard"]
        assert json.loads((DASHBOARDS_DIR / f"{uid}.json").read_text())["uid"] == uid


@pytest.mark.parametrize("uid", sorted(UIDS))
def test_every_panel_and_query_uses_the_datasource_variable(uid: str) -> None:
    dashboard = load_dashboards()[uid]
    variables = {v["name"]: v for v in dashboard["templating"]["list"]}
    assert variables["datasource"]["type"] == "datasource"
    assert variables["datasource"]["query"] == "prometheus"
    found = list(panels(dashboard))
    assert found
    for panel in found:
        assert panel["datasource"] == DATASOURCE, panel["title"]
        assert panel["targets"], panel["title"]
        for target in panel["targets"]:
            assert target["datasource"] == DATASOURCE, panel["title"]
    for variable in variables.values():
        if variable["type"] == "query":
            assert variable["datasource"] == DATASOURCE


def test_queue_variables() -> None:
    dashboards = load_dashboards()
    for uid, multi in (("jobyard-overview", True), ("jobyard-queue", False)):
        queue = next(v for v in dashboards[uid]["templating"]["list"] if v["name"] == "queue")
        assert variable_queries(dashboards[uid])["queue"] == (
            'label_values(jobyard_queue_depth{namespace=~"$namespace"}, queue)'
        )
        assert (queue["multi"], queue["includeAll"]) == (multi, multi), uid
    for dashboard in dashboards.values():
        namespace = next(v for v in dashboard["templating"]["list"] if v["name"] == "namespace")
        assert namespace["includeAll"] and namespace["allValue"] == ".*"


def test_no_cluster_or_namespace_is_hard_coded() -> None:
    for path in dashboard_paths():
        assert "cluster" not in path.read_text().lower(), path.name
    for query in queries():
        matchers = re.findall(r'namespace\s*(=~|!~|!=|=)\s*"([^"]*)"', query.expr)
        assert all(m == ("=~", "$namespace") for m in matchers), query
        if query.external_sources != {"KEDA"}:  # KEDA's `namespace` label is its own
            assert matchers or query.expr.startswith("vector("), query


def test_every_query_parses_in_prometheus(prometheus: PrometheusServer) -> None:
    exprs = [q.expr for q in queries()]
    for dashboard in load_dashboards().values():
        exprs += [  # a variable's label_values(selector, label): its selector must parse
            re.sub(r"^label_values\((.*), \w+\)$", r"\1", q)
            for q in variable_queries(dashboard).values()
        ]
    assert len(exprs) > 60
    failures = []
    for expr in exprs:
        plain = substitute_variables(expr)
        response = prometheus.query(plain)
        if response.status_code != 200:
            failures.append(f"{plain}\n  -> {response.status_code} {response.text}")
    assert not failures, "\n".join(failures)


def test_the_parse_check_rejects_a_broken_query(prometheus: PrometheusServer) -> None:
    response = prometheus.query("sum by (queue) (rate(jobyard_jobs_finished_total[5m])")
    assert response.status_code == 400
    assert response.json()["errorType"] == "bad_data"


def test_queries_use_only_jobyard_metrics_or_named_third_parties() -> None:
    known = jobyard_series_names() | set(EXTERNAL_METRICS)
    for query in queries():
        used = metric_names(query.expr)
        assert used <= known, f"{query}: unknown {sorted(used - known)}"
        for source in query.external_sources:
            assert f"({source}, optional)" in query.panel, query
    for dashboard in load_dashboards().values():
        for expr in variable_queries(dashboard).values():
            selector = re.sub(r"^label_values\((.*), \w+\)$", r"\1", expr)
            assert metric_names(selector) <= jobyard_series_names(), expr


def test_every_variable_a_query_uses_is_defined() -> None:
    for uid, dashboard in load_dashboards().items():
        defined = {v["name"] for v in dashboard["templating"]["list"]} | BUILTIN_VARIABLES
        exprs = [t["expr"] for p in panels(dashboard) for t in p["targets"]]
        for expr in exprs + list(variable_queries(dashboard).values()):
            used = {v for v in template_variables(expr) if not v.isdigit()}
            assert used <= defined, f"{uid}: {expr} uses {sorted(used - defined)}"


def test_queue_state_gauges_are_never_summed() -> None:
    for query in queries():
        assert summed_scrape_time_gauges(query.expr) == set(), query


def _cells(panel: dict[str, Any]) -> set[tuple[int, int]]:
    pos = panel["gridPos"]
    return {
        (x, y)
        for x in range(pos["x"], pos["x"] + pos["w"])
        for y in range(pos["y"], pos["y"] + pos["h"])
    }


@pytest.mark.parametrize("uid", sorted(UIDS))
def test_layout_has_unique_ids_and_titles_and_no_overlap(uid: str) -> None:
    dashboard = load_dashboards()[uid]
    all_panels = dashboard["panels"]
    assert len({p["id"] for p in all_panels}) == len(all_panels)
    titles = [p["title"] for p in panels(dashboard)]
    assert len(set(titles)) == len(titles)
    taken: set[tuple[int, int]] = set()
    for panel in all_panels:
        pos = panel["gridPos"]
        assert pos["x"] + pos["w"] <= 24, panel["title"]
        cells = _cells(panel)
        assert not cells & taken, f"{panel['title']} overlaps another panel"
        taken |= cells
