"""The promtool tests catch the mistakes these rules are designed to avoid.

Each case rewrites one rule the wrong way (the way celery-exporter's mixin, a naive
`increase` or a `sum` over API replicas would have it) and runs the promtool test file that
guards against it: promtool must fail. When a rule is reworded on purpose, update the
`old` text here.
"""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path
from typing import NamedTuple

import pytest

from tests.monitoring.alert_rules import PROMTOOL_TESTS_DIR, ROOT, RULES_PATH
from tests.monitoring.prometheus_server import binary


class Mutant(NamedTuple):
    id: str
    old: str
    new: str
    test_file: str


MUTANTS = [
    Mutant(
        "backlog summed over API replicas",
        "max by (namespace, queue) (jobyard_queue_depth)\n",
        "sum by (namespace, queue) (jobyard_queue_depth)\n",
        "no-false-alarms.test.yaml",
    ),
    Mutant(
        "queues of two namespaces mixed",
        "max by (namespace, queue) (jobyard_queue_alert_backlog_jobs)",
        "max by (queue) (jobyard_queue_alert_backlog_jobs)",
        "no-false-alarms.test.yaml",
    ),
    Mutant(
        "dead letters with increase() on a gauge",
        "jobyard_queue_dead_letters - min_over_time(jobyard_queue_dead_letters[30m])",
        "increase(jobyard_queue_dead_letters[30m])",
        "queues.test.yaml",
    ),
    Mutant(
        "dead letters with delta()",
        "jobyard_queue_dead_letters - min_over_time(jobyard_queue_dead_letters[30m])",
        "delta(jobyard_queue_dead_letters[30m])",
        "queues.test.yaml",
    ),
    Mutant(
        "not-consumed without the backlog condition (fires for a queue scaled to zero)",
        "max by (namespace, queue) (jobyard_queue_depth) > 0\n",
        "max by (namespace, queue) (jobyard_queue_depth) >= 0\n",
        "no-false-alarms.test.yaml",
    ),
    Mutant(
        "retried attempts counted as finished jobs",
        '{outcome!="retried"}[15m]))\n          )',
        '{outcome=~".+"}[15m]))\n          )',
        "jobs.test.yaml",
    ),
    Mutant(
        "failure ratio without the minimum volume",
        "jobyard_queue_alert_failure_min_jobs)",
        "jobyard_queue_alert_failure_min_jobs * 0)",
        "jobs.test.yaml",
    ),
    Mutant(
        "literal failure threshold instead of the queue's own",
        "> on (namespace, queue)\n"
        "          max by (namespace, queue) (jobyard_queue_alert_failure_ratio)",
        "> 0.01",
        "jobs.test.yaml",
    ),
    Mutant(
        "probes counted in the API error ratio",
        '{status=~"5..", route!~"/healthz|/readyz|/metrics"}',
        '{status=~"5.."}',
        "api.test.yaml",
    ),
    Mutant(
        "beat never-ticked case while Redis is down",
        "unless on (namespace) (max by (namespace) (jobyard_redis_up) == 0)",
        "",
        "beat.test.yaml",
    ),
    Mutant(
        "Redis alert per replica instead of for the whole installation",
        "max by (namespace) (jobyard_redis_up) == 0\n        for: 2m",
        "min by (namespace) (jobyard_redis_up) == 0\n        for: 2m",
        "meta.test.yaml",
    ),
    Mutant(
        "schedule grace shorter than a scrape of a never-run interval schedule",
        "(jobyard_schedule_next_run_timestamp_seconds) > 120",
        "(jobyard_schedule_next_run_timestamp_seconds) > -1",
        "beat.test.yaml",
    ),
]


@pytest.mark.parametrize("mutant", MUTANTS, ids=lambda m: m.id)
def test_promtool_tests_catch_mutant(mutant: Mutant, tmp_path: Path) -> None:
    text = RULES_PATH.read_text(encoding="utf-8")
    assert text.count(mutant.old) >= 1, f"rule text for mutant {mutant.id!r} not found"
    rules = tmp_path / RULES_PATH.relative_to(ROOT)
    rules.parent.mkdir(parents=True)
    rules.write_text(text.replace(mutant.old, mutant.new), encoding="utf-8")
    valid = subprocess.run(
        [binary("promtool"), "check", "rules", str(rules)],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert valid.returncode == 0, f"mutant {mutant.id!r} is not a valid rule file:\n{valid.stdout}"
    tests = tmp_path / PROMTOOL_TESTS_DIR.relative_to(ROOT)
    tests.mkdir(parents=True)
    shutil.copy(PROMTOOL_TESTS_DIR / mutant.test_file, tests)
    done = subprocess.run(
        [binary("promtool"), "test", "rules", str(tests / mutant.test_file)],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert done.returncode != 0, f"mutant {mutant.id!r} survived:\n{done.stdout}"
    assert "FAILED" in done.stderr, done.stdout + done.stderr
