"""jobyard's alert rules as data, and the facts other parts of the repo rely on."""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

ROOT = Path(__file__).resolve().parents[2]
RULES_PATH = ROOT / "charts" / "jobyard" / "files" / "prometheus" / "jobyard-alerts.yaml"
PROMTOOL_TESTS_DIR = ROOT / "deploy" / "monitoring" / "tests"
RUNBOOKS_DIR = ROOT / "docs" / "runbooks"
DASHBOARDS_DIR = ROOT / "charts" / "jobyard" / "files" / "dashboards"

RUNBOOK_BASE_URL = "https://github.com/jobyard/jobyard/blob/main/docs/runbooks/"
"""Prefix of every `runbook_url`; the chart replaces it with its own value."""
GRAFANA_BASE_URL = "https://grafana.example.com"
"""Prefix of every `dashboard_url` (followed by `/d/<uid>`); the chart replaces it."""

GROUPS = ("jobyard-queues", "jobyard-jobs", "jobyard-beat", "jobyard-api", "jobyard-meta")
"""Rule group names: the chart drops whole groups behind flags, by these names."""

_TEMPLATE_QUERY = re.compile(r'printf\s+"((?:[^"\\]|\\.)*)"')


@dataclass(frozen=True)
class Alert:
    group: str
    name: str
    expr: str
    for_: str
    labels: dict[str, str]
    annotations: dict[str, str]

    @property
    def template_queries(self) -> list[str]:
        """PromQL the annotation templates run (`printf "max(x{...})" ... | query`)."""
        found: list[str] = []
        for text in self.annotations.values():
            found += [m.group(1).replace('\\"', '"') for m in _TEMPLATE_QUERY.finditer(text)]
        return found

    @property
    def runbook_page(self) -> str:
        """`queue-backlog-high.md` for JobyardQueueBacklogHigh."""
        words = re.findall(r"[A-Z][a-z0-9]*", self.name.removeprefix("Jobyard"))
        return "-".join(w.lower() for w in words) + ".md"


def load_rule_file(path: Path = RULES_PATH) -> dict[str, Any]:
    data = yaml.safe_load(path.read_text(encoding="utf-8"))
    assert isinstance(data, dict), f"{path}: not a mapping"
    return data


def load_alerts(path: Path = RULES_PATH) -> list[Alert]:
    """Every alerting rule of the file, in file order."""
    alerts: list[Alert] = []
    for group in load_rule_file(path)["groups"]:
        for rule in group["rules"]:
            if "alert" not in rule:
                continue
            alerts.append(
                Alert(
                    group=group["name"],
                    name=rule["alert"],
                    expr=rule["expr"],
                    for_=rule.get("for", "0s"),
                    labels=dict(rule.get("labels", {})),
                    annotations=dict(rule.get("annotations", {})),
                )
            )
    return alerts


def promtool_test_files() -> list[Path]:
    return sorted(PROMTOOL_TESTS_DIR.glob("*.test.yaml"))
