"""The alert rules' shape: names, labels, annotations, links, metrics and aggregation."""

from __future__ import annotations

import re
from typing import Any

import pytest

from jobyard.core.config import BeatConfig, QueueAlerts
from jobyard.observability import metrics
from tests.monitoring.alert_rules import (
    GRAFANA_BASE_URL,
    GROUPS,
    ROOT,
    RULES_PATH,
    RUNBOOK_BASE_URL,
    RUNBOOKS_DIR,
    Alert,
    load_alerts,
    load_rule_file,
)
from tests.monitoring.dashboard_files import load_dashboards, panels, variable_queries
from tests.monitoring.exported_metrics import jobyard_series_names, summed_scrape_time_gauges
from tests.monitoring.markdown import anchors
from tests.monitoring.promql import metric_names

ALERTS = load_alerts()
QUEUE_GROUPS = ("jobyard-queues", "jobyard-jobs")
"""Groups whose alerts are per queue (they carry a `queue` label)."""
VALUE_FREE = {"JobyardMetricsAbsent", "JobyardRedisUnreachable"}
"""Alerts whose value means nothing (absent() is 1, redis_up is 0): no `$value` to show."""


def test_groups_are_the_ones_the_chart_selects() -> None:
    assert [g["name"] for g in load_rule_file()["groups"]] == list(GROUPS)
    assert [a.name for a in ALERTS if a.group in QUEUE_GROUPS] == [
        "JobyardQueueBacklogHigh",
        "JobyardQueueOldestJobTooOld",
        "JobyardQueueNotConsumed",
        "JobyardQueueWaitSlow",
        "JobyardDeadLettersGrowing",
        "JobyardJobFailureRatioHigh",
        "JobyardJobRunNearTimeLimit",
    ]
    assert [a.name for a in ALERTS if a.group not in QUEUE_GROUPS] == [
        "JobyardBeatDown",
        "JobyardScheduleMissed",
        "JobyardApiErrorRatioHigh",
        "JobyardMetricsAbsent",
        "JobyardRedisUnreachable",
    ]


@pytest.mark.parametrize("alert", ALERTS, ids=lambda a: a.name)
def test_labels_and_annotations(alert: Alert) -> None:
    assert re.fullmatch(r"Jobyard[A-Z][A-Za-z]+", alert.name)
    assert alert.labels.keys() == {"severity"}
    assert alert.labels["severity"] in ("warning", "critical")
    assert alert.annotations.keys() == {"summary", "description", "runbook_url", "dashboard_url"}
    assert alert.annotations["summary"].endswith(".")
    assert "{{" not in alert.annotations["summary"]
    description = alert.annotations["description"]
    if alert.name not in VALUE_FREE:
        assert re.search(r"\$value \| humanize(Duration|Percentage)?\b", description), description
    if alert.group in QUEUE_GROUPS:
        assert "{{ $labels.queue }}" in description
    assert re.fullmatch(r"\d+m", alert.for_), alert.for_


@pytest.mark.parametrize("alert", ALERTS, ids=lambda a: a.name)
def test_runbook_url_points_at_an_existing_page_and_anchor(alert: Alert) -> None:
    url = alert.annotations["runbook_url"]
    assert url.startswith(RUNBOOK_BASE_URL), url
    page, _, anchor = url.removeprefix(RUNBOOK_BASE_URL).partition("#")
    assert page == alert.runbook_page
    path = RUNBOOKS_DIR / page
    assert path.is_file(), f"{alert.name}: runbook {path} does not exist"
    assert anchor == alert.name.lower()
    assert anchor in anchors(path), f"{alert.name}: no heading with anchor #{anchor} in {path}"


@pytest.mark.parametrize("alert", ALERTS, ids=lambda a: a.name)
def test_dashboard_url_opens_the_right_dashboard(alert: Alert) -> None:
    url = alert.annotations["dashboard_url"]
    match = re.fullmatch(re.escape(GRAFANA_BASE_URL) + r"/d/([a-z-]+)(.*)", url)
    assert match, url
    uid, query = match.groups()
    assert uid in load_dashboards()
    namespace = "{{ with $labels.namespace }}%svar-namespace={{ . }}{{ end }}"
    if alert.group in QUEUE_GROUPS:
        assert uid == "jobyard-queue"
        assert query == "?var-queue={{ $labels.queue }}" + namespace % "&"
    elif alert.name == "JobyardMetricsAbsent":
        assert query == ""  # absent() has no namespace label
    else:
        assert query == namespace % "?"


@pytest.mark.parametrize("alert", ALERTS, ids=lambda a: a.name)
def test_linked_dashboard_shows_what_the_alert_measures(alert: Alert) -> None:
    """Every measured series (thresholds aside) is queried on the linked dashboard."""
    uid = re.search(r"/d/([a-z-]+)", alert.annotations["dashboard_url"])
    assert uid is not None
    dashboard = load_dashboards()[uid.group(1)]
    shown = set().union(*(metric_names(q) for q in _dashboard_exprs(dashboard)))
    measured = {n for n in metric_names(alert.expr) if "_alert_" not in n}
    assert measured - shown == set(), f"{alert.name}: not on dashboard {uid.group(1)}"


def _dashboard_exprs(dashboard: dict[str, Any]) -> list[str]:
    exprs = [t["expr"] for p in panels(dashboard) for t in p.get("targets", [])]
    return exprs + list(variable_queries(dashboard).values())


@pytest.mark.parametrize("alert", ALERTS, ids=lambda a: a.name)
def test_rules_use_only_metrics_jobyard_exports(alert: Alert) -> None:
    used = metric_names(alert.expr)
    for query in alert.template_queries:
        used |= metric_names(query)
    assert used, alert.expr
    unknown = used - jobyard_series_names()
    assert not unknown, (
        f"{alert.name} uses {sorted(unknown)}, which jobyard.observability.metrics does not define"
    )


@pytest.mark.parametrize("alert", ALERTS, ids=lambda a: a.name)
def test_no_per_pod_series_in_expressions(alert: Alert) -> None:
    """Worker pods come and go: expressions never keep or match their target labels."""
    assert not re.search(r"\b(instance|pod|hostname|job|container)\b", alert.expr), alert.expr


def test_summed_gauge_check_finds_a_sum() -> None:
    assert summed_scrape_time_gauges("sum by (queue) (jobyard_queue_depth)") == {
        "jobyard_queue_depth"
    }
    assert summed_scrape_time_gauges("max by (queue) (jobyard_queue_depth)") == set()


@pytest.mark.parametrize("alert", ALERTS, ids=lambda a: a.name)
def test_queue_state_gauges_are_never_summed(alert: Alert) -> None:
    assert summed_scrape_time_gauges(alert.expr) == set(), alert.expr


def test_every_configured_threshold_drives_an_alert() -> None:
    assert set(metrics.QUEUE_ALERT_THRESHOLDS) == set(QueueAlerts.model_fields)
    used = set().union(*(metric_names(a.expr) for a in ALERTS))
    for field, spec in metrics.QUEUE_ALERT_THRESHOLDS.items():
        assert spec.name in used, f"queues[].alerts.{field} ({spec.name}) is used by no rule"
    assert metrics.QUEUE_SOFT_TIME_LIMIT.name in used


def _grace_s(alert_name: str) -> int:
    alert = next(a for a in ALERTS if a.name == alert_name)
    match = re.search(r"\) > (\d+)\n", alert.expr)
    assert match, alert.expr
    return int(match.group(1))


def test_beat_graces_cover_the_longest_allowed_tick() -> None:
    """A beat ticking at its slowest allowed rate, scraped late, is neither down nor late."""
    longest_tick_s = BeatConfig.model_json_schema()["properties"]["tick_s"]["maximum"]
    assert _grace_s("JobyardBeatDown") >= 2 * longest_tick_s
    assert _grace_s("JobyardScheduleMissed") >= 2 * longest_tick_s


def test_chart_rewrites_the_url_prefixes_the_rules_use() -> None:
    """The chart `replace`s these literal prefixes with its values: they must agree."""
    helpers = (ROOT / "charts" / "jobyard" / "templates" / "_helpers.tpl").read_text()
    assert f"\n{RUNBOOK_BASE_URL}\n" in helpers
    assert f"\n{GRAFANA_BASE_URL}\n" in helpers
    text = RULES_PATH.read_text(encoding="utf-8")
    urls = re.findall(r"(?:runbook|dashboard)_url: (\S+)", text)
    assert len(urls) == 2 * len(ALERTS)
    assert all(u.startswith((RUNBOOK_BASE_URL, GRAFANA_BASE_URL + "/d/")) for u in urls)
