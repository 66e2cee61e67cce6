"""Helpers of the monitoring e2e test: a real Prometheus over a running jobyard.

- :func:`derive_rule_file`: a copy of the shipped rule file with every `for:` shortened
  (the shipped file is never edited), checked with `promtool check rules`.
- :func:`prometheus_config`: scrape jobs `jobyard-api`, `jobyard-worker`, `jobyard-beat`
  every second, with a static `namespace` label as a ServiceMonitor would add.
- :class:`PromClient`: the parts of Prometheus's HTTP API the test reads (alerts, targets,
  instant and range queries, label values).
- :class:`Figures`: what the test measured, written as Markdown and JSON.
"""

from __future__ import annotations

import json
import math
import subprocess
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import httpx
import yaml

from tests.monitoring.prometheus_server import binary

SCRAPE_JOBS = ("jobyard-api", "jobyard-worker", "jobyard-beat")


def derive_rule_file(source: Path, dest: Path, for_s: float) -> list[str]:
    """Write `source` to `dest` with every rule's `for:` set to `for_s`; return alert names.

    Everything else (expressions, labels, annotations) is the shipped rule file's.
    """
    data = yaml.safe_load(source.read_text(encoding="utf-8"))
    alerts: list[str] = []
    for group in data["groups"]:
        for rule in group["rules"]:
            if "alert" in rule:
                alerts.append(rule["alert"])
            if "for" in rule:
                rule["for"] = f"{for_s:g}s"
    dest.write_text(yaml.safe_dump(data, sort_keys=False, width=1000), encoding="utf-8")
    return alerts


def promtool_check_rules(path: Path) -> str:
    """`promtool check rules path`; its output, or AssertionError with it on failure."""
    done = subprocess.run(
        [binary("promtool"), "check", "rules", str(path)],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    output = done.stdout + done.stderr
    assert done.returncode == 0, f"promtool check rules {path}:\n{output}"
    return output


def prometheus_config(
    rule_file: Path | None, targets: dict[str, list[str]], namespace: str, interval_s: int = 1
) -> str:
    """A Prometheus config scraping `targets` (job name -> host:port list), evaluating
    `rule_file` (None: no rules yet)."""
    unknown = set(targets) - set(SCRAPE_JOBS)
    assert not unknown, f"scrape jobs {sorted(unknown)}; expected some of {SCRAPE_JOBS}"
    config = {
        "global": {
            "scrape_interval": f"{interval_s}s",
            "scrape_timeout": f"{interval_s}s",
            "evaluation_interval": f"{interval_s}s",
        },
        "rule_files": [] if rule_file is None else [str(rule_file)],
        "scrape_configs": [
            {
                "job_name": job,
                "static_configs": [{"targets": hosts, "labels": {"namespace": namespace}}],
            }
            for job, hosts in targets.items()
        ],
    }
    return yaml.safe_dump(config, sort_keys=False)


class PromClient:
    """Prometheus's HTTP API, failing loudly on anything but `status: success`."""

    def __init__(self, url: str) -> None:
        self.http = httpx.Client(base_url=url, timeout=30)

    def __enter__(self) -> PromClient:
        return self

    def __exit__(self, *_: object) -> None:
        self.http.close()

    def _get(self, path: str, **params: Any) -> Any:
        response = self.http.get(path, params=params)
        body = response.json()
        if response.status_code != 200 or body.get("status") != "success":
            raise AssertionError(f"GET {path} {params}: {response.status_code} {body}")
        return body["data"]

    def alerts(self) -> list[dict[str, Any]]:
        """Active alerts (pending and firing); resolved ones are not listed."""
        alerts: list[dict[str, Any]] = self._get("/api/v1/alerts")["alerts"]
        return alerts

    def reload(self) -> None:
        """Re-read the config file (`--web.enable-lifecycle`)."""
        response = self.http.post("/-/reload")
        assert response.status_code == 200, response.text

    def rule_groups(self) -> list[dict[str, Any]]:
        groups: list[dict[str, Any]] = self._get("/api/v1/rules")["groups"]
        return groups

    def targets(self) -> list[dict[str, Any]]:
        active: list[dict[str, Any]] = self._get("/api/v1/targets")["activeTargets"]
        return active

    def query(self, expr: str, at: float | None = None) -> list[dict[str, Any]]:
        params: dict[str, Any] = {"query": expr}
        if at is not None:
            params["time"] = at
        result: list[dict[str, Any]] = self._get("/api/v1/query", **params)["result"]
        return result

    def query_range(
        self, expr: str, start: float, end: float, step_s: float
    ) -> tuple[str, list[dict[str, Any]]]:
        """(resultType, result) of a range query."""
        data = self._get("/api/v1/query_range", query=expr, start=start, end=end, step=step_s)
        return data["resultType"], data["result"]

    def label_values(self, label: str, match: str) -> list[str]:
        values: list[str] = self._get(f"/api/v1/label/{label}/values", **{"match[]": match})
        return values


def firing(alerts: list[dict[str, Any]], name: str, **labels: str) -> dict[str, Any] | None:
    """The firing alert `name` whose labels include `labels`, if any."""
    for alert in alerts:
        if (
            alert["state"] == "firing"
            and alert["labels"].get("alertname") == name
            and all(alert["labels"].get(k) == v for k, v in labels.items())
        ):
            return alert
    return None


def active(alerts: list[dict[str, Any]], name: str, **labels: str) -> list[dict[str, Any]]:
    """Pending or firing alerts `name` whose labels include `labels`."""
    return [
        a
        for a in alerts
        if a["labels"].get("alertname") == name
        and all(a["labels"].get(k) == v for k, v in labels.items())
    ]


def finite_values(series: list[dict[str, Any]]) -> list[float]:
    """Every finite sample value of an instant (`value`) or range (`values`) result."""
    found: list[float] = []
    for s in series:
        points = s["values"] if "values" in s else [s["value"]]
        found += [float(v) for _, v in points if math.isfinite(float(v))]
    return found


def wait_for(
    what: str, predicate: Any, timeout_s: float, interval_s: float = 0.25
) -> tuple[Any, float]:
    """Poll `predicate` until truthy; (its value, when it became so: `time.time()`)."""
    deadline = time.monotonic() + timeout_s
    last: Any = None
    while time.monotonic() < deadline:
        last = predicate()
        if last:
            return last, time.time()
        time.sleep(interval_s)
    raise AssertionError(f"{what}: not after {timeout_s:g} s (last: {last!r})")


@dataclass
class Figures:
    """What the monitoring e2e test saw; `markdown()` is the report the lead quotes."""

    command: str
    for_s: float
    scrape_interval_s: float
    stopped_queue: str
    backlog_threshold: int
    backlog_enqueued: int
    alerts_fired_after_s: dict[str, float] = field(default_factory=dict)
    """alertname -> seconds from the condition becoming true (enqueue) to `firing`."""
    alerts_cleared_after_s: dict[str, float] = field(default_factory=dict)
    """alertname -> seconds from the worker's restart to the alert no longer active."""
    worker_ready_after_s: float = 0.0
    fired_during_test: list[str] = field(default_factory=list)
    pending_only_during_test: list[str] = field(default_factory=list)
    redis_outages_s: list[float] = field(default_factory=list)
    http_5xx_caused: int = 0
    failed_scrapes: dict[str, float] = field(default_factory=dict)
    max_scrape_duration_s: dict[str, float] = field(default_factory=dict)
    dashboard_queries: int = 0
    queries_checked: int = 0
    queries_with_data: int = 0
    queries_external_skipped: list[str] = field(default_factory=list)
    queries_without_data_allowed: list[str] = field(default_factory=list)
    finished_jobs_seen_by_increase: tuple[int, float | None] = (0, None)
    """(jobs that finished on the stopped queue, what `increase()` over the window saw)."""
    api_error_ratio_max: float = 0.0
    """The largest 5xx ratio (JobyardApiErrorRatioHigh's, threshold 0.05) in the window."""
    panels_above_zero: dict[str, float] = field(default_factory=dict)
    """Panels that must show what the test did on purpose -> their largest value."""
    test_window_s: float = 0.0

    def markdown(self) -> str:
        def secs(d: dict[str, float]) -> str:
            return ", ".join(f"{k} {v:.1f} s" for k, v in d.items()) or "none"

        lines = [
            "## monitoring e2e: what a real Prometheus saw",
            "",
            f"- command: `{self.command}`",
            f"- scrape/evaluation interval {self.scrape_interval_s:g} s; every `for:` "
            f"shortened to {self.for_s:g} s (derived copy of the shipped rule file)",
            f"- queue `{self.stopped_queue}`: worker stopped, {self.backlog_enqueued} jobs "
            f"enqueued (backlog threshold {self.backlog_threshold})",
            "- fired after (from the enqueue that made the condition true: the first job for "
            "NotConsumed, the one above the threshold for BacklogHigh): "
            f"{secs(self.alerts_fired_after_s)}",
            f"- worker ready {self.worker_ready_after_s:.1f} s after its restart; cleared "
            f"after (from the restart): {secs(self.alerts_cleared_after_s)}",
            f"- alerts that fired during the test: {', '.join(self.fired_during_test)}",
            f"- alerts pending but never firing: "
            f"{', '.join(self.pending_only_during_test) or 'none'}",
            f"- Redis outages for 5xx: {', '.join(f'{s:.2f} s' for s in self.redis_outages_s)}"
            f" ({self.http_5xx_caused} x 503 from POST /v1/jobs); largest 5xx ratio of "
            f"JobyardApiErrorRatioHigh (5m rates, threshold 0.05): {self.api_error_ratio_max:g}",
            "- failed scrapes (the stopped worker's are expected): "
            + ", ".join(f"{k} {v:g}" for k, v in self.failed_scrapes.items()),
            "- slowest scrape: "
            + ", ".join(f"{k} {v * 1000:.0f} ms" for k, v in self.max_scrape_duration_s.items()),
            f"- dashboard queries: {self.dashboard_queries} in the dashboards, "
            f"{self.queries_checked} checked (per queue where `$queue` applies), "
            f"{self.queries_with_data} returned data",
            f"- skipped, external (kube-state-metrics/KEDA): {len(self.queries_external_skipped)}",
            f"- allowed without data: {len(self.queries_without_data_allowed)}"
            + "".join(f"\n  - {q}" for q in self.queries_without_data_allowed),
            f"- jobs finished on `{self.stopped_queue}`: {self.finished_jobs_seen_by_increase[0]}; "
            f"`increase()` over the window saw {self.finished_jobs_seen_by_increase[1] or 0:.1f}",
            "- largest value of the panels that must show what was done on purpose:"
            + "".join(f"\n  - {k}: {v:.3g}" for k, v in self.panels_above_zero.items()),
            f"- test window (Prometheus start to last query): {self.test_window_s:.0f} s",
            "",
        ]
        return "\n".join(lines)

    def write(self, directory: Path, stem: str = "monitoring-e2e") -> list[Path]:
        md = directory / f"{stem}.md"
        js = directory / f"{stem}.json"
        md.write_text(self.markdown(), encoding="utf-8")
        js.write_text(json.dumps(asdict(self), indent=2) + "\n", encoding="utf-8")
        return [md, js]
