"""ServiceMonitor, PodMonitors, the PrometheusRule (the very rules promtool tests) and the
dashboards for Grafana's sidecar."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import yaml

from tests.chart.rendering import RELEASE, Rendered, deep_merge, load_values, pod_spec

Render = Callable[[str], Rendered]
RenderWith = Callable[[dict[str, Any]], Rendered]
ROOT = Path(__file__).resolve().parents[2]


def _rule_file(chart_dir: Path) -> dict[str, Any]:
    return dict(
        yaml.safe_load(
            (chart_dir / "files" / "prometheus" / "jobyard-alerts.yaml").read_text(encoding="utf-8")
        )
    )


class TestScrapeTargets:
    def test_service_monitor_scrapes_the_api_service(self, rendered: Render) -> None:
        r = rendered("monitoring")
        monitor = r.get("ServiceMonitor", f"{RELEASE}-api")
        service = r.get("Service", f"{RELEASE}-api")
        assert monitor["metadata"]["labels"]["release"] == "kube-prometheus-stack"
        assert (
            monitor["spec"]["selector"]["matchLabels"].items()
            <= service["metadata"]["labels"].items()
        )
        assert monitor["spec"]["endpoints"] == [
            {"port": "http", "path": "/metrics", "interval": "30s", "scrapeTimeout": "10s"}
        ]
        assert monitor["spec"]["namespaceSelector"] == {"matchNames": ["jobs"]}

    def test_pod_monitors_scrape_every_worker_and_beat(self, rendered: Render) -> None:
        r = rendered("monitoring")
        for component, port in (("worker", "metrics"), ("beat", "metrics")):
            monitor = r.get("PodMonitor", f"{RELEASE}-{component}")
            selector = monitor["spec"]["selector"]["matchLabels"]
            assert monitor["spec"]["podMetricsEndpoints"] == [
                {"port": port, "path": "/metrics", "interval": "15s", "scrapeTimeout": "10s"},
            ]
            matched = [
                d
                for d in r.of_kind("Deployment")
                if selector.items() <= d["spec"]["template"]["metadata"]["labels"].items()
            ]
            expected = 3 if component == "worker" else 1
            assert len(matched) == expected
            for d in matched:
                assert any(p["name"] == port for p in pod_spec(d)["containers"][0]["ports"])

    def test_nothing_without_the_flags(self, rendered: Render) -> None:
        r = rendered("defaults")
        for kind in ("ServiceMonitor", "PodMonitor", "PrometheusRule"):
            assert r.of_kind(kind) == []


class TestPrometheusRule:
    def test_rules_equal_the_promtool_tested_file(self, rendered: Render, chart_dir: Path) -> None:
        rule = rendered("monitoring").get("PrometheusRule", RELEASE)
        assert rule["spec"]["groups"] == _rule_file(chart_dir)["groups"]
        assert rule["metadata"]["labels"]["release"] == "kube-prometheus-stack"

    def test_groups_can_be_dropped(self, render_with: RenderWith, chart_dir: Path) -> None:
        groups = [g["name"] for g in _rule_file(chart_dir)["groups"]]
        dropped = groups[0]
        values = deep_merge(
            load_values("monitoring"),
            {"monitoring": {"prometheusRule": {"disabledGroups": [dropped]}}},
        )
        rule = render_with(values).get("PrometheusRule", RELEASE)
        assert [g["name"] for g in rule["spec"]["groups"]] == groups[1:]

    def test_runbook_and_grafana_urls_are_rewritten(
        self, render_with: RenderWith, chart_dir: Path
    ) -> None:
        values = deep_merge(
            load_values("monitoring"),
            {
                "monitoring": {
                    "prometheusRule": {
                        "runbookBaseUrl": "https://wiki.example.org/jobyard/",
                        "grafanaBaseUrl": "https://grafana.example.org",
                    }
                }
            },
        )
        rule = render_with(values).get("PrometheusRule", RELEASE)
        source = _rule_file(chart_dir)
        for got, want in zip(rule["spec"]["groups"], source["groups"], strict=True):
            for r_got, r_want in zip(got["rules"], want["rules"], strict=True):
                ann = r_got.get("annotations", {})
                src = r_want.get("annotations", {})
                if "runbook_url" in src:
                    assert ann["runbook_url"] == src["runbook_url"].replace(
                        "https://github.com/jobyard/jobyard/blob/main/docs/runbooks/",
                        "https://wiki.example.org/jobyard/",
                    )
                    assert ann["runbook_url"].startswith("https://wiki.example.org/jobyard/")
                if "dashboard_url" in src:
                    assert ann["dashboard_url"].startswith("https://grafana.example.org/d/")
                assert r_got["expr"] == r_want["expr"]


class TestDashboards:
    def test_one_configmap_per_dashboard_for_the_sidecar(
        self, rendered: Render, chart_dir: Path
    ) -> None:
        r = rendered("monitoring")
        sources = sorted((chart_dir / "files" / "dashboards").glob("*.json"))
        maps = [c for c in r.of_kind("ConfigMap") if "grafana_dashboard" in c["metadata"]["labels"]]
        assert len(maps) == len(sources) > 0
        by_file = {next(iter(c["data"])): c for c in maps}
        for source in sources:
            cm = by_file[source.name]
            assert cm["metadata"]["labels"]["grafana_dashboard"] == "1"
            assert cm["metadata"]["annotations"] == {"grafana_folder": "jobyard"}
            assert json.loads(cm["data"][source.name]) == json.loads(
                source.read_text(encoding="utf-8")
            )

    def test_the_dev_grafana_sidecar_picks_them_up(self, rendered: Render) -> None:
        """deploy/kube-prometheus-stack-values.yaml looks for the label the chart sets, and
        its Prometheus selects the chart's monitors and rules."""
        kps = yaml.safe_load(
            (ROOT / "deploy" / "kube-prometheus-stack-values.yaml").read_text(encoding="utf-8")
        )
        sidecar = kps["grafana"]["sidecar"]["dashboards"]
        dev = yaml.safe_load(
            (ROOT / "deploy" / "dev-monitoring-values.yaml").read_text(encoding="utf-8")
        )
        chart = yaml.safe_load(
            (ROOT / "charts" / "jobyard" / "values.yaml").read_text(encoding="utf-8")
        )
        dashboards = deep_merge(
            chart["monitoring"]["dashboards"], dev["monitoring"].get("dashboards", {})
        )
        assert sidecar["enabled"] is True
        assert (sidecar["label"], str(sidecar["labelValue"])) == (
            dashboards["label"],
            dashboards["labelValue"],
        )
        assert sidecar["folderAnnotation"] == dashboards["folderAnnotation"]
        spec = kps["prometheus"]["prometheusSpec"]
        for selector in (
            "ruleSelectorNilUsesHelmValues",
            "serviceMonitorSelectorNilUsesHelmValues",
            "podMonitorSelectorNilUsesHelmValues",
        ):
            assert spec[selector] is False
