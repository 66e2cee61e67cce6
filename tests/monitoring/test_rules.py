"""promtool on the rule file: it parses, and every promtool unit test passes.

Also checks that the unit tests keep up with the rules: every alert has a case one
evaluation before it fires and one where it fires with exact labels and annotations.
"""

from __future__ import annotations

import subprocess
from collections import defaultdict
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.monitoring.alert_rules import (
    RULES_PATH,
    Alert,
    load_alerts,
    promtool_test_files,
)
from tests.monitoring.prometheus_server import binary

ALERTS = load_alerts()
ANNOTATIONS = {"summary", "description", "runbook_url", "dashboard_url"}


def promtool(*args: str | Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [binary("promtool"), *map(str, args)],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


def test_rule_file_passes_promtool_check() -> None:
    done = promtool("check", "rules", RULES_PATH)
    assert done.returncode == 0, done.stdout + done.stderr
    assert f"SUCCESS: {len(ALERTS)} rules found" in done.stdout, done.stdout


@pytest.mark.parametrize("path", promtool_test_files(), ids=lambda p: p.name)
def test_promtool_unit_tests_pass(path: Path) -> None:
    done = promtool("test", "rules", path)
    assert done.returncode == 0, f"promtool test rules {path.name}:\n{done.stdout}{done.stderr}"
    assert "SUCCESS" in done.stdout


def _load(path: Path) -> dict[str, Any]:
    data: dict[str, Any] = yaml.safe_load(path.read_text(encoding="utf-8"))
    return data


def test_every_test_file_loads_the_rule_file_with_a_one_minute_interval() -> None:
    files = promtool_test_files()
    assert len(files) >= 5
    for path in files:
        data = _load(path)
        assert [(path.parent / f).resolve() for f in data["rule_files"]] == [RULES_PATH], path
        assert data["evaluation_interval"] == "1m", path
        assert all(t["interval"] == "1m" for t in data["tests"]), path


def _cases() -> dict[str, list[tuple[str, int, bool]]]:
    """alertname -> (test name, eval time in minutes, fires?) for every alert_rule_test."""
    found: dict[str, list[tuple[str, int, bool]]] = defaultdict(list)
    for path in promtool_test_files():
        for test in _load(path)["tests"]:
            for case in test.get("alert_rule_test", []):
                eval_time = str(case["eval_time"])
                assert eval_time.endswith("m"), f"{path.name}: eval_time {eval_time} not in m"
                found[case["alertname"]].append(
                    (f"{path.name}: {test['name']}", int(eval_time[:-1]), bool(case["exp_alerts"]))
                )
    return found


@pytest.mark.parametrize("alert", ALERTS, ids=lambda a: a.name)
def test_alert_is_tested_just_before_and_just_after_it_fires(alert: Alert) -> None:
    cases = _cases()[alert.name]
    pairs = {(test, t) for test, t, fires in cases if fires and (test, t - 1, False) in cases}
    assert pairs, (
        f"{alert.name}: no promtool test has a silent case one evaluation (1m) before a "
        f"firing case; cases: {sorted(cases)}"
    )


@pytest.mark.parametrize("alert", ALERTS, ids=lambda a: a.name)
def test_firing_cases_state_exact_labels_and_every_annotation(alert: Alert) -> None:
    checked = 0
    for path in promtool_test_files():
        for test in _load(path)["tests"]:
            for case in test.get("alert_rule_test", []):
                if case["alertname"] != alert.name:
                    continue
                for expected in case["exp_alerts"]:
                    assert expected["exp_labels"]["severity"] == alert.labels["severity"]
                    assert set(expected["exp_annotations"]) == ANNOTATIONS, (path, test["name"])
                    checked += 1
    assert checked > 0


def test_no_false_alarm_scenarios_check_every_alert() -> None:
    """The idle-system scenario names every alert and checks ALERTS over the whole hour."""
    data = _load(next(p for p in promtool_test_files() if p.name == "no-false-alarms.test.yaml"))
    idle = data["tests"][0]
    assert idle["name"].startswith("idle queue")
    silent = {c["alertname"] for c in idle["alert_rule_test"] if not c["exp_alerts"]}
    assert silent == {a.name for a in ALERTS}
    assert idle["promql_expr_test"] == [
        {
            "expr": 'max_over_time(ALERTS{alertname=~"Jobyard.+"}[60m])',
            "eval_time": "60m",
            "exp_samples": [],
        }
    ]
    names = [t["name"] for t in data["tests"]]
    assert any("worker churn" in n for n in names)
    assert any("two API replicas" in n for n in names)
    assert any("scaled to zero" in n for n in names)
