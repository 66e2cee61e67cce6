"""The metric definitions: the contract's names, bounded labels, lazy creation."""

from __future__ import annotations

import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

from jobyard.observability import metrics

CONTRACT = {
    # name: (type, labels)
    "jobyard_jobs_enqueued_total": ("counter", ("queue", "task")),
    "jobyard_jobs_finished_total": ("counter", ("queue", "task", "outcome")),
    "jobyard_job_run_duration_seconds": ("histogram", ("queue", "task")),
    "jobyard_job_queue_wait_seconds": ("histogram", ("queue", "task")),
    "jobyard_jobs_running": ("gauge", ("queue", "task")),
    "jobyard_worker_info": ("gauge", ("queue", "version")),
    "jobyard_beat_leader": ("gauge", ()),
    "jobyard_http_requests_total": ("counter", ("route", "method", "status")),
    "jobyard_http_request_duration_seconds": ("histogram", ("route", "method")),
    "jobyard_build_info": ("gauge", ("version", "component")),
}
SCRAPE_TIME = {
    "jobyard_queue_depth": ("queue",),
    "jobyard_queue_oldest_job_age_seconds": ("queue",),
    "jobyard_queue_jobs_in_progress": ("queue",),
    "jobyard_queue_dead_letters": ("queue",),
    "jobyard_queue_workers": ("queue",),
    "jobyard_redis_up": (),
    "jobyard_beat_last_tick_timestamp_seconds": (),
    "jobyard_schedule_last_run_timestamp_seconds": ("schedule",),
    "jobyard_schedule_next_run_timestamp_seconds": ("schedule",),
    "jobyard_queue_alert_backlog_jobs": ("queue",),
    "jobyard_queue_alert_oldest_job_age_seconds": ("queue",),
    "jobyard_queue_alert_failure_ratio": ("queue",),
    "jobyard_queue_alert_failure_min_jobs": ("queue",),
    "jobyard_queue_alert_wait_p95_seconds": ("queue",),
    "jobyard_queue_soft_time_limit_seconds": ("queue",),
    "jobyard_queue_alert_run_p95_ratio": ("queue",),
}
ACCESSORS = [
    metrics.jobs_enqueued,
    metrics.jobs_finished,
    metrics.job_run_duration,
    metrics.job_queue_wait,
    metrics.jobs_running,
    metrics.worker_info,
    metrics.beat_leader,
    metrics.http_requests,
    metrics.http_request_duration,
    metrics.build_info,
]
BOUNDED_LABELS = {
    "queue",
    "task",
    "outcome",
    "schedule",
    "route",
    "method",
    "status",
    "version",
    "component",
}


def _kind(metric: Counter | Gauge | Histogram) -> str:
    return {Counter: "counter", Gauge: "gauge", Histogram: "histogram"}[type(metric)]


def _full_name(metric: Counter | Gauge | Histogram) -> str:
    name: str = metric._name
    return name + "_total" if isinstance(metric, Counter) else name


def test_process_metrics_match_the_contract() -> None:
    defined = {_full_name(m): (_kind(m), tuple(m._labelnames)) for m in (a() for a in ACCESSORS)}
    assert defined == CONTRACT


def test_scrape_time_gauges_match_the_contract() -> None:
    defined = {spec.name: spec.labels for spec in metrics.SCRAPE_TIME_GAUGES}
    assert defined == SCRAPE_TIME


def test_every_threshold_field_of_the_config_is_exported() -> None:
    from jobyard.core.config import QueueAlerts

    assert set(metrics.QUEUE_ALERT_THRESHOLDS) == set(QueueAlerts.model_fields)


def test_names_are_prefixed_and_labels_bounded() -> None:
    names = set(CONTRACT) | set(SCRAPE_TIME)
    assert all(n.startswith("jobyard_") for n in names)
    labels = {label for _, ls in CONTRACT.values() for label in ls} | {
        label for ls in SCRAPE_TIME.values() for label in ls
    }
    assert labels <= BOUNDED_LABELS


def test_job_histograms_use_the_contract_buckets() -> None:
    buckets = metrics.JOB_DURATION_BUCKETS_S
    assert buckets[:8] == (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1)
    assert buckets[8:] == (2.5, 5, 10, 30, 60, 120, 300, 600, 1800, 3600)
    for histogram in (metrics.job_run_duration(), metrics.job_queue_wait()):
        assert histogram._upper_bounds[:-1] == [float(b) for b in metrics.JOB_DURATION_BUCKETS_S]
    assert metrics.HTTP_DURATION_BUCKETS_S[0] == 0.001
    assert metrics.HTTP_DURATION_BUCKETS_S[-1] == 10


def test_accessors_return_one_metric_each() -> None:
    assert metrics.jobs_finished() is metrics.jobs_finished()


def test_count_enqueued_groups_records_by_queue_and_task() -> None:
    from jobyard.core.records import JobRecord, JobState

    def record(queue: str, task: str) -> JobRecord:
        return JobRecord(id="x", task=task, queue=queue, state=JobState.QUEUED, enqueued_at=0)

    counter = metrics.jobs_enqueued()
    before = {key: counter.labels(*key)._value.get() for key in [("q1", "a.b"), ("q2", "a.b")]}
    metrics.count_enqueued_records([record("q1", "a.b"), record("q1", "a.b"), record("q2", "a.b")])
    assert counter.labels("q1", "a.b")._value.get() - before[("q1", "a.b")] == 2
    assert counter.labels("q2", "a.b")._value.get() - before[("q2", "a.b")] == 1


@pytest.mark.parametrize(
    ("method", "label"), [("get", "GET"), ("POST", "POST"), ("BREW", "other"), ("", "other")]
)
def test_http_method_label_is_bounded(method: str, label: str) -> None:
    assert metrics.http_method_label(method) == label


def test_import_creates_no_metric_and_multiprocess_can_be_enabled_after(tmp_path: Path) -> None:
    # A fresh interpreter: importing the module (and prometheus_client) must leave the
    # multiprocess choice open; enabling it then makes values go to files.
    code = textwrap.dedent(
        f"""
        import os, pathlib
        from jobyard.observability import metrics
        assert metrics._created == {{}}
        assert not metrics.multiprocess_enabled()
        d = pathlib.Path({str(tmp_path)!r})
        metrics.enable_multiprocess(d)
        assert os.environ["PROMETHEUS_MULTIPROC_DIR"] == str(d)
        metrics.jobs_finished().labels("q", "t", "succeeded").inc()
        print(os.getpid())
        print(sorted(p.name for p in d.iterdir()))
        try:
            metrics.enable_multiprocess(d)
        except RuntimeError as exc:
            print("refused:", exc)
        """
    )
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=60
    ).stdout.splitlines()
    pid = out[0]
    assert out[1] == f"['counter_{pid}.db']"
    assert out[2] == (
        "refused: enable_multiprocess() must run before any jobyard metric is created; "
        "already created: jobyard_jobs_finished_total"
    )


def test_track_beat_leader_reads_the_state_at_scrape_time() -> None:
    state = {"leading": False}
    metrics.track_beat_leader(lambda: state["leading"])
    registry = CollectorRegistry()
    registry.register(metrics.beat_leader())
    assert registry.get_sample_value("jobyard_beat_leader") == 0
    state["leading"] = True
    assert registry.get_sample_value("jobyard_beat_leader") == 1
