"""jobyard's Grafana dashboards, generated from this one source.

    python deploy/monitoring/dashboards.py            # (re)write the JSON files
    python deploy/monitoring/dashboards.py --check    # exit 1 when a committed file differs

The JSON lands in charts/jobyard/files/dashboards/, where the Helm chart reads it (Helm
only reads files inside the chart). Edit this file, never the JSON: a test runs
`--check` and fails on drift.

Every panel queries the `datasource` variable. Queue-state gauges are exported identically
by every API replica, so they are aggregated with `max`; worker counters and histograms
are summed after `rate`. `namespace` (a scrape target label) filters one installation; its
"All" value `.*` also matches series that have no namespace label at all. Panels on
kube-state-metrics or KEDA series say so in their title and stay empty without them.
"""

from __future__ import annotations

import argparse
import json
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[2]
OUT_DIR = ROOT / "charts" / "jobyard" / "files" / "dashboards"

SCHEMA_VERSION = 39
DATASOURCE = {"type": "prometheus", "uid": "${datasource}"}
RATE = "$__rate_interval"
PROBE_ROUTES = "/healthz|/readyz|/metrics"
"""Routes left out of the API's error ratio, as in JobyardApiErrorRatioHigh."""

EXTERNAL_METRICS = {
    "kube_deployment_spec_replicas": "kube-state-metrics",
    "kube_deployment_status_replicas_available": "kube-state-metrics",
    "keda_scaler_metrics_value": "KEDA",
    "keda_scaler_active": "KEDA",
    "keda_scaled_object_paused": "KEDA",
}
"""Series the dashboards use that jobyard does not export, and who exports them. A panel
using one names that source in its title, e.g. "(KEDA, optional)"."""

Json = dict[str, Any]


# --- panels --------------------------------------------------------------------------


def target(expr: str, legend: str = "__auto", ref: str = "A") -> Json:
    return {
        "datasource": DATASOURCE,
        "editorMode": "code",
        "expr": expr,
        "legendFormat": legend,
        "range": True,
        "refId": ref,
    }


def _targets(queries: list[tuple[str, str]]) -> list[Json]:
    return [target(expr, legend, chr(ord("A") + i)) for i, (expr, legend) in enumerate(queries)]


def _thresholds(steps: list[tuple[str, float | None]]) -> Json:
    return {"mode": "absolute", "steps": [{"color": c, "value": v} for c, v in steps]}


DASHED = {"custom.lineStyle": {"dash": [10, 10], "fill": "dash"}}
"""Override for threshold lines drawn next to a measurement."""


def timeseries(
    title: str,
    queries: list[tuple[str, str]],
    *,
    unit: str = "short",
    description: str = "",
    stacked: bool = False,
    dashed: str | None = None,
    signed: bool = False,
    width: int = 12,
    height: int = 8,
) -> Json:
    """A time series panel; `dashed` is a regex of series names drawn as dashed lines.

    The y axis starts at 0 unless `signed`.
    """
    overrides: list[Json] = []
    if dashed is not None:
        overrides.append(
            {
                "matcher": {"id": "byRegexp", "options": dashed},
                "properties": [{"id": k, "value": v} for k, v in DASHED.items()],
            }
        )
    return {
        "type": "timeseries",
        "title": title,
        "description": description,
        "datasource": DATASOURCE,
        "targets": _targets(queries),
        "fieldConfig": {
            "defaults": {
                "unit": unit,
                "min": None if signed else 0,
                "custom": {
                    "drawStyle": "line",
                    "lineWidth": 1,
                    "fillOpacity": 20 if stacked else 0,
                    "showPoints": "never",
                    "spanNulls": False,
                    "stacking": {"mode": "normal" if stacked else "none", "group": "A"},
                },
            },
            "overrides": overrides,
        },
        "options": {
            "legend": {"displayMode": "list", "placement": "bottom", "showLegend": True},
            "tooltip": {"mode": "multi", "sort": "desc"},
        },
        "_size": (width, height),
    }


def stat(
    title: str,
    expr: str,
    *,
    unit: str = "short",
    description: str = "",
    thresholds: list[tuple[str, float | None]] | None = None,
    mappings: list[Json] | None = None,
    legend: str = "__auto",
    width: int = 4,
    height: int = 4,
) -> Json:
    """A single-value panel (last value)."""
    return {
        "type": "stat",
        "title": title,
        "description": description,
        "datasource": DATASOURCE,
        "targets": [target(expr, legend)],
        "fieldConfig": {
            "defaults": {
                "unit": unit,
                "thresholds": _thresholds(thresholds or [("text", None)]),
                "mappings": mappings or [],
                "color": {"mode": "thresholds"},
            },
            "overrides": [],
        },
        "options": {
            "reduceOptions": {"calcs": ["lastNotNull"], "fields": "", "values": False},
            "colorMode": "background" if thresholds else "none",
            "graphMode": "none",
            "textMode": "auto",
            "justifyMode": "auto",
            "orientation": "auto",
        },
        "_size": (width, height),
    }


def row(title: str) -> Json:
    return {"type": "row", "title": title, "collapsed": False, "panels": [], "_size": (24, 1)}


def up_down_mappings() -> list[Json]:
    return [
        {
            "type": "value",
            "options": {
                "0": {"text": "down", "color": "red", "index": 0},
                "1": {"text": "up", "color": "green", "index": 1},
            },
        }
    ]


# --- dashboards ----------------------------------------------------------------------


@dataclass
class Dashboard:
    uid: str
    title: str
    description: str
    variables: list[Json]
    panels: list[Json] = field(default_factory=list)

    def to_json(self) -> Json:
        return {
            "uid": self.uid,
            "title": self.title,
            "description": self.description,
            "tags": ["jobyard"],
            "editable": True,
            "graphTooltip": 1,
            "schemaVersion": SCHEMA_VERSION,
            "version": 1,
            "time": {"from": "now-3h", "to": "now"},
            "refresh": "1m",
            "timezone": "",
            "fiscalYearStartMonth": 0,
            "liveNow": False,
            "annotations": {"list": []},
            "links": [
                {
                    "type": "dashboards",
                    "title": "jobyard",
                    "tags": ["jobyard"],
                    "asDropdown": False,
                    "includeVars": True,
                    "keepTime": True,
                    "targetBlank": False,
                    "icon": "external link",
                    "tooltip": "",
                    "url": "",
                }
            ],
            "templating": {"list": self.variables},
            "panels": _laid_out(self.panels),
        }


def _laid_out(panels: list[Json]) -> list[Json]:
    """Give panels ids and grid positions, left to right, wrapping at 24 columns."""
    out: list[Json] = []
    x = y = row_height = 0
    for i, panel in enumerate(panels, start=1):
        width, height = panel["_size"]
        if x + width > 24 or panel["type"] == "row":
            x, y, row_height = 0, y + row_height, 0
        placed = {"id": i, "gridPos": {"h": height, "w": width, "x": x, "y": y}}
        placed.update({k: v for k, v in panel.items() if k != "_size"})
        out.append(placed)
        x += width
        row_height = max(row_height, height)
        if panel["type"] == "row":
            x, y, row_height = 0, y + height, 0
    return out


def datasource_variable() -> Json:
    return {
        "name": "datasource",
        "label": "Data source",
        "type": "datasource",
        "query": "prometheus",
        "current": {},
        "hide": 0,
        "includeAll": False,
        "multi": False,
        "options": [],
        "refresh": 1,
        "regex": "",
        "skipUrlSync": False,
    }


def query_variable(
    name: str, label: str, query: str, *, include_all: bool, multi: bool = False
) -> Json:
    variable: Json = {
        "name": name,
        "label": label,
        "type": "query",
        "datasource": DATASOURCE,
        "definition": query,
        "query": {"query": query, "refId": f"{name}-variable"},
        "current": {},
        "hide": 0,
        "includeAll": include_all,
        "multi": multi,
        "options": [],
        "refresh": 2,
        "regex": "",
        "skipUrlSync": False,
        "sort": 1,
    }
    if include_all:
        variable["allValue"] = ".*"
    return variable


NAMESPACE_VARIABLE = query_variable(
    "namespace",
    "Namespace",
    'label_values(jobyard_build_info{component="api"}, namespace)',
    include_all=True,
)
NS = 'namespace=~"$namespace"'


def quantiles(metric: str, sel: str, by: str | None = None) -> list[tuple[str, str]]:
    """p50, p95 and p99 of a histogram, summed (by the label `by`) over every process."""
    grouping = f"{by}, le" if by else "le"
    legend = f" {{{{{by}}}}}" if by else ""
    return [
        (
            f"histogram_quantile({q}, sum by ({grouping}) "
            f"(rate({metric}_bucket{{{sel}}}[{RATE}])))",
            f"p{round(q * 100)}{legend}",
        )
        for q in (0.5, 0.95, 0.99)
    ]


def ratio(part: str, whole: str, by: str | None = None) -> str:
    """`part / whole` of two rates, 0 (not "no data") where `part` has no series."""
    agg = f"sum by ({by})" if by else "sum"
    part_rate = f"{agg} (rate({part}[{RATE}]))"
    whole_rate = f"{agg} (rate({whole}[{RATE}]))"
    return f"({part_rate} or {whole_rate} * 0) / {whole_rate}"


def overview() -> Dashboard:
    sel = f'{NS}, queue=~"$queue"'
    finished = "jobyard_jobs_finished_total"
    d = Dashboard(
        uid="jobyard-overview",
        title="jobyard / Overview",
        description="Every queue at a glance: backlog, age, throughput, failures, "
        "latency, workers, dead letters, beat and Redis.",
        variables=[
            datasource_variable(),
            NAMESPACE_VARIABLE,
            query_variable(
                "queue",
                "Queue",
                f"label_values(jobyard_queue_depth{{{NS}}}, queue)",
                include_all=True,
                multi=True,
            ),
        ],
    )
    d.panels += [
        row("Queues"),
        timeseries(
            "Waiting jobs by queue",
            [(f"max by (queue) (jobyard_queue_depth{{{sel}}})", "{{queue}}")],
            description="Jobs waiting in Redis, every priority list summed "
            "(JobyardQueueBacklogHigh).",
            width=8,
        ),
        timeseries(
            "Oldest waiting job by queue",
            [(f"max by (queue) (jobyard_queue_oldest_job_age_seconds{{{sel}}})", "{{queue}}")],
            unit="s",
            description="How long the oldest waiting job has waited (JobyardQueueOldestJobTooOld).",
            width=8,
        ),
        timeseries(
            "Jobs in progress by queue",
            [(f"max by (queue) (jobyard_queue_jobs_in_progress{{{sel}}})", "{{queue}}")],
            width=8,
        ),
        timeseries(
            "Live workers by queue",
            [(f"max by (queue) (jobyard_queue_workers{{{sel}}})", "{{queue}}")],
            description="Workers with a recent heartbeat in Redis; 0 for a queue scaled to "
            "zero (JobyardQueueNotConsumed).",
        ),
        timeseries(
            "Worker replicas by queue (kube-state-metrics, optional)",
            [
                (
                    "sum by (queue) (label_replace(kube_deployment_spec_replicas"
                    f'{{{NS}, deployment=~".+-worker-(?:$queue)"}}, '
                    '"queue", "$1", "deployment", ".+?-worker-(.+)"))',
                    "desired {{queue}}",
                ),
                (
                    "sum by (queue) (label_replace(kube_deployment_status_replicas_available"
                    f'{{{NS}, deployment=~".+-worker-(?:$queue)"}}, '
                    '"queue", "$1", "deployment", ".+?-worker-(.+)"))',
                    "available {{queue}}",
                ),
            ],
            description="Replicas of the <release>-worker-<queue> Deployments, as KEDA and "
            "the HPA set them. Needs kube-state-metrics.",
        ),
        row("Throughput and failures"),
        timeseries(
            "Jobs finished by outcome (jobs/s)",
            [(f"sum by (outcome) (rate({finished}{{{sel}}}[{RATE}]))", "{{outcome}}")],
            stacked=True,
            description="Every ended run; `retried` counts attempts that will run again.",
            width=8,
        ),
        timeseries(
            "Jobs enqueued by queue (jobs/s)",
            [
                (
                    f"sum by (queue) (rate(jobyard_jobs_enqueued_total{{{sel}}}[{RATE}]))",
                    "{{queue}}",
                )
            ],
            width=8,
        ),
        timeseries(
            "Failure ratio by queue",
            [
                (
                    ratio(
                        f'{finished}{{{sel}, outcome=~"failed|dead"}}',
                        f'{finished}{{{sel}, outcome!="retried"}}',
                        by="queue",
                    ),
                    "{{queue}}",
                ),
                (
                    f"max by (queue) (jobyard_queue_alert_failure_ratio{{{sel}}})",
                    "threshold {{queue}}",
                ),
            ],
            unit="percentunit",
            dashed="threshold .*",
            description="Failed and dead-lettered jobs over finished jobs (retried attempts "
            "left out); dashed: the queue's alert threshold (JobyardJobFailureRatioHigh).",
            width=8,
        ),
        row("Latency"),
        timeseries(
            "Queue wait p50 / p95 / p99",
            quantiles("jobyard_job_queue_wait_seconds", sel, by="queue"),
            unit="s",
            description="Enqueue (or ETA) to start (JobyardQueueWaitSlow: p95).",
        ),
        timeseries(
            "Run duration p50 / p95 / p99",
            quantiles("jobyard_job_run_duration_seconds", sel, by="queue"),
            unit="s",
            description="One attempt's run time (JobyardJobRunNearTimeLimit: p95).",
        ),
        row("Dead letters, beat and Redis"),
        timeseries(
            "Dead letters by queue",
            [(f"max by (queue) (jobyard_queue_dead_letters{{{sel}}})", "{{queue}}")],
            description="Jobs that failed their last attempt (JobyardDeadLettersGrowing).",
            width=8,
        ),
        timeseries(
            "Schedules: time to next run",
            [
                (
                    f"max by (schedule) (jobyard_schedule_next_run_timestamp_seconds{{{NS}}})"
                    " - time()",
                    "{{schedule}}",
                )
            ],
            unit="s",
            signed=True,
            description="Negative: overdue (JobyardScheduleMissed at -2 minutes).",
            width=8,
        ),
        timeseries(
            "Schedules: time since last run",
            [
                (
                    "time() - max by (schedule) "
                    f"(jobyard_schedule_last_run_timestamp_seconds{{{NS}}})",
                    "{{schedule}}",
                )
            ],
            unit="s",
            width=8,
        ),
        stat(
            "Since the last beat tick",
            f"time() - max(jobyard_beat_last_tick_timestamp_seconds{{{NS}}})",
            unit="s",
            thresholds=[("green", None), ("orange", 30), ("red", 120)],
            description="Age of the leading beat's last tick (JobyardBeatDown above 2 minutes).",
            width=6,
        ),
        stat(
            "Beat leaders",
            f"sum(jobyard_beat_leader{{{NS}}})",
            thresholds=[("red", None), ("green", 1), ("red", 2)],
            description="Beat processes holding the leader lease: exactly 1 is healthy.",
            width=6,
        ),
        stat(
            "Redis",
            f"max(jobyard_redis_up{{{NS}}})",
            thresholds=[("red", None), ("green", 1)],
            mappings=up_down_mappings(),
            description="Whether the API could read Redis at its last scrape "
            "(JobyardRedisUnreachable).",
            width=6,
        ),
        stat(
            "Worker processes scraped",
            f"count(jobyard_worker_info{{{sel}}}) or vector(0)",
            description="Worker pods Prometheus scrapes (all selected queues).",
            width=6,
        ),
    ]
    return d


def queue_drilldown() -> Dashboard:
    sel = f'{NS}, queue="$queue"'
    finished = "jobyard_jobs_finished_total"
    d = Dashboard(
        uid="jobyard-queue",
        title="jobyard / Queue",
        description="One queue in detail: state against its alert thresholds, per-task "
        "throughput, failures and latency, workers and autoscaling.",
        variables=[
            datasource_variable(),
            NAMESPACE_VARIABLE,
            query_variable(
                "queue",
                "Queue",
                f"label_values(jobyard_queue_depth{{{NS}}}, queue)",
                include_all=False,
            ),
        ],
    )
    d.panels += [
        row("State"),
        stat("Waiting", f"max(jobyard_queue_depth{{{sel}}})"),
        stat("Oldest waiting", f"max(jobyard_queue_oldest_job_age_seconds{{{sel}}})", unit="s"),
        stat("In progress", f"max(jobyard_queue_jobs_in_progress{{{sel}}})"),
        stat(
            "Live workers",
            f"max(jobyard_queue_workers{{{sel}}})",
            description="Workers with a recent heartbeat in Redis.",
        ),
        stat("Dead letters", f"max(jobyard_queue_dead_letters{{{sel}}})"),
        stat(
            "Worker processes scraped",
            f"count(jobyard_worker_info{{{sel}}}) or vector(0)",
            description="Worker pods of this queue that Prometheus scrapes.",
        ),
        timeseries(
            "Waiting jobs and backlog threshold",
            [
                (f"max(jobyard_queue_depth{{{sel}}})", "waiting"),
                (f"max(jobyard_queue_alert_backlog_jobs{{{sel}}})", "alert threshold"),
            ],
            dashed="alert threshold",
            description="JobyardQueueBacklogHigh fires after 10 minutes above the threshold.",
        ),
        timeseries(
            "Oldest waiting job and wait SLO",
            [
                (f"max(jobyard_queue_oldest_job_age_seconds{{{sel}}})", "oldest job"),
                (f"max(jobyard_queue_alert_oldest_job_age_seconds{{{sel}}})", "alert threshold"),
            ],
            unit="s",
            dashed="alert threshold",
            description="JobyardQueueOldestJobTooOld fires after 5 minutes above the SLO.",
        ),
        row("Throughput and failures by task"),
        timeseries(
            "Enqueued and finished (jobs/s)",
            [
                (f"sum(rate(jobyard_jobs_enqueued_total{{{sel}}}[{RATE}]))", "enqueued"),
                (f'sum(rate({finished}{{{sel}, outcome!="retried"}}[{RATE}]))', "finished"),
            ],
            description="Finished below enqueued for long: the backlog grows.",
        ),
        timeseries(
            "Finished by task and outcome (jobs/s)",
            [
                (
                    f"sum by (task, outcome) (rate({finished}{{{sel}}}[{RATE}]))",
                    "{{task}} {{outcome}}",
                )
            ],
            stacked=True,
        ),
        timeseries(
            "Failure ratio by task",
            [
                (
                    ratio(
                        f'{finished}{{{sel}, outcome=~"failed|dead"}}',
                        f'{finished}{{{sel}, outcome!="retried"}}',
                        by="task",
                    ),
                    "{{task}}",
                ),
                (f"max(jobyard_queue_alert_failure_ratio{{{sel}}})", "alert threshold"),
            ],
            unit="percentunit",
            dashed="alert threshold",
            description="The alert (JobyardJobFailureRatioHigh) uses the whole queue over 15 "
            "minutes; this shows which task fails.",
        ),
        timeseries(
            "Running jobs by task",
            [(f"sum by (task) (jobyard_jobs_running{{{sel}}})", "{{task}}")],
            stacked=True,
        ),
        row("Latency by task"),
        timeseries(
            "Queue wait p50 / p95 / p99",
            [
                *quantiles("jobyard_job_queue_wait_seconds", sel),
                (f"max(jobyard_queue_alert_wait_p95_seconds{{{sel}}})", "alert threshold (p95)"),
            ],
            unit="s",
            dashed="alert threshold.*",
            description="JobyardQueueWaitSlow fires after 10 minutes of p95 above the threshold.",
        ),
        timeseries(
            "Queue wait p95 by task",
            [
                (
                    "histogram_quantile(0.95, sum by (task, le) "
                    f"(rate(jobyard_job_queue_wait_seconds_bucket{{{sel}}}[{RATE}])))",
                    "{{task}}",
                )
            ],
            unit="s",
        ),
        timeseries(
            "Run duration p50 / p95 / p99",
            [
                *quantiles("jobyard_job_run_duration_seconds", sel),
                (
                    f"max(jobyard_queue_soft_time_limit_seconds{{{sel}}})"
                    f" * max(jobyard_queue_alert_run_p95_ratio{{{sel}}})",
                    "alert threshold (p95)",
                ),
                (f"max(jobyard_queue_soft_time_limit_seconds{{{sel}}})", "soft time limit"),
            ],
            unit="s",
            dashed="alert threshold.*|soft time limit",
            description="JobyardJobRunNearTimeLimit fires after 10 minutes of p95 above the "
            "threshold (a fraction of the queue's soft time limit).",
        ),
        timeseries(
            "Run duration p95 by task",
            [
                (
                    "histogram_quantile(0.95, sum by (task, le) "
                    f"(rate(jobyard_job_run_duration_seconds_bucket{{{sel}}}[{RATE}])))",
                    "{{task}}",
                )
            ],
            unit="s",
        ),
        row("Workers, autoscaling and dead letters"),
        timeseries(
            "Workers",
            [
                (f"max(jobyard_queue_workers{{{sel}}})", "live (heartbeats)"),
                (f"count(jobyard_worker_info{{{sel}}})", "scraped"),
            ],
            description="0 live workers with jobs waiting: JobyardQueueNotConsumed.",
            width=8,
        ),
        timeseries(
            "Worker replicas (kube-state-metrics, optional)",
            [
                (
                    f'sum(kube_deployment_spec_replicas{{{NS}, deployment=~".+-worker-$queue"}})',
                    "desired",
                ),
                (
                    "sum(kube_deployment_status_replicas_available"
                    f'{{{NS}, deployment=~".+-worker-$queue"}})',
                    "available",
                ),
            ],
            description="The <release>-worker-<queue> Deployment. Needs kube-state-metrics.",
            width=8,
        ),
        timeseries(
            "KEDA scaler (KEDA, optional)",
            [
                (
                    'max(keda_scaler_metrics_value{scaledObject=~".+-worker-$queue"})',
                    "metric value",
                ),
                ('max(keda_scaler_active{scaledObject=~".+-worker-$queue"})', "active"),
                ('max(keda_scaled_object_paused{scaledObject=~".+-worker-$queue"})', "paused"),
            ],
            description="What KEDA reads for the <release>-worker-<queue> ScaledObject, "
            "whether it is active and whether it is paused. Needs KEDA's operator metrics.",
            width=8,
        ),
        timeseries(
            "Dead letters over time",
            [(f"max(jobyard_queue_dead_letters{{{sel}}})", "dead letters")],
            description="Jobs that failed their last attempt (JobyardDeadLettersGrowing).",
            width=24,
        ),
    ]
    return d


def api() -> Dashboard:
    all_requests = f'jobyard_http_requests_total{{{NS}, route!~"{PROBE_ROUTES}"}}'
    errors = f'jobyard_http_requests_total{{{NS}, route!~"{PROBE_ROUTES}", status=~"5.."}}'
    duration = f"jobyard_http_request_duration_seconds_bucket{{{NS}}}"
    error_ratio = ratio(errors, all_requests)
    d = Dashboard(
        uid="jobyard-api",
        title="jobyard / API",
        description="The HTTP API: traffic by route and status, errors, latency, replicas "
        "and Redis.",
        variables=[datasource_variable(), NAMESPACE_VARIABLE],
    )
    d.panels += [
        row("Now"),
        stat(
            "Requests/s",
            f"sum(rate(jobyard_http_requests_total{{{NS}}}[{RATE}]))",
            unit="reqps",
        ),
        stat(
            "5xx ratio",
            error_ratio,
            unit="percentunit",
            thresholds=[("green", None), ("red", 0.05)],
            description="Probes and scrapes left out (JobyardApiErrorRatioHigh above 5%).",
        ),
        stat(
            "p95 latency",
            f"histogram_quantile(0.95, sum by (le) (rate({duration}[{RATE}])))",
            unit="s",
        ),
        stat(
            "API replicas scraped",
            f'count(jobyard_build_info{{{NS}, component="api"}}) or vector(0)',
            thresholds=[("red", None), ("green", 1)],
            description="0: JobyardMetricsAbsent.",
        ),
        stat(
            "Redis",
            f"max(jobyard_redis_up{{{NS}}})",
            thresholds=[("red", None), ("green", 1)],
            mappings=up_down_mappings(),
        ),
        stat(
            "Jobs enqueued/s",
            f"sum(rate(jobyard_jobs_enqueued_total{{{NS}}}[{RATE}]))",
        ),
        row("Traffic"),
        timeseries(
            "Requests by route (req/s)",
            [
                (
                    f"sum by (route) (rate(jobyard_http_requests_total{{{NS}}}[{RATE}]))",
                    "{{route}}",
                )
            ],
            unit="reqps",
            stacked=True,
        ),
        timeseries(
            "Requests by status (req/s)",
            [
                (
                    f"sum by (status) (rate(jobyard_http_requests_total{{{NS}}}[{RATE}]))",
                    "{{status}}",
                )
            ],
            unit="reqps",
            stacked=True,
        ),
        timeseries(
            "5xx ratio over time",
            [(error_ratio, "5xx ratio"), ("vector(0.05)", "alert threshold")],
            unit="percentunit",
            dashed="alert threshold",
            description="Server errors over requests, probes and scrapes left out.",
        ),
        timeseries(
            "5xx by route (req/s)",
            [(f"sum by (route, status) (rate({errors}[{RATE}]))", "{{route}} {{status}}")],
            unit="reqps",
        ),
        row("Latency"),
        timeseries(
            "Latency p50 / p95 / p99",
            quantiles("jobyard_http_request_duration_seconds", NS),
            unit="s",
        ),
        timeseries(
            "p95 latency by route",
            [
                (
                    f"histogram_quantile(0.95, sum by (route, le) (rate({duration}[{RATE}])))",
                    "{{route}}",
                )
            ],
            unit="s",
        ),
        row("Producers and versions"),
        timeseries(
            "Jobs enqueued by queue (jobs/s)",
            [
                (
                    f"sum by (queue) (rate(jobyard_jobs_enqueued_total{{{NS}}}[{RATE}]))",
                    "{{queue}}",
                )
            ],
        ),
        timeseries(
            "Processes by component and version",
            [
                (
                    f"count by (component, version) (jobyard_build_info{{{NS}}})",
                    "{{component}} {{version}}",
                )
            ],
            description="Two versions of one component at once: a rollout in progress.",
        ),
    ]
    return d


DASHBOARDS = {
    "jobyard-overview.json": overview,
    "jobyard-queue.json": queue_drilldown,
    "jobyard-api.json": api,
}
"""File name -> builder. The file name is the dashboard's uid plus `.json`."""


def render(build: Any) -> str:
    """The committed text of one dashboard."""
    return json.dumps(build().to_json(), indent=2, ensure_ascii=False) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--check", action="store_true", help="fail when a file differs")
    parser.add_argument("--out", type=Path, default=OUT_DIR, help="output directory")
    args = parser.parse_args(argv)
    out: Path = args.out
    stale: list[str] = []
    for name, build in DASHBOARDS.items():
        path = out / name
        text = render(build)
        current = path.read_text(encoding="utf-8") if path.exists() else None
        if current == text:
            continue
        if args.check:
            stale.append(str(path))
        else:
            out.mkdir(parents=True, exist_ok=True)
            path.write_text(text, encoding="utf-8")
            print(f"wrote {path}")
    if stale:
        print(
            "dashboards differ from deploy/monitoring/dashboards.py: "
            + ", ".join(stale)
            + "\nrun: python deploy/monitoring/dashboards.py",
            file=sys.stderr,
        )
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
