# ruff: noqa: RUF001  (the report prints the multiplication sign and en dash on purpose)
"""The report's figures and tables, from a report with known numbers."""

from __future__ import annotations

from typing import Any

from bench.report import figures, render_markdown
from bench.stats import latency_summary_ms, percentile, summary


def _s(*values: float) -> dict[str, float]:
    return summary(list(values))


REPORT: dict[str, Any] = {
    "plan": {
        "profile": "full",
        "reps": 3,
        "drain_jobs": 20000,
        "drain_modes": ["solo"],
        "drain_max_s": 45,
        "latency_rate_per_s": 200,
        "latency_duration_s": 20,
        "saturation_fraction": 0.8,
        "saturation_duration_s": 5,
        "http_clients": 16,
        "http_duration_s": 4,
    },
    "machine": {
        "cpu": "Test CPU",
        "cores": 2,
        "memory_gib": 24.0,
        "os": "Linux",
        "python": "3.11.7",
        "redis_server": "7.0.15",
        "libraries": {"celery": "5.7.0"},
        "git_commit": "abc123",
        "load_at_start": [0.5, 0.5, 0.5],
        "load_at_end": [0.9, 0.6, 0.5],
    },
    "started_at": 0.0,
    "duration_s": 600.0,
    "systems": {"jobyard": "j", "celery": "c"},
    "drain": {
        "jobyard": {
            "solo": {
                "runs": [],
                "jobs_per_s": _s(900, 880, 950),
                "cpu_us_per_job": _s(1000, 990, 1100),
                "redis_commands_per_job": _s(16, 16, 16),
                "peak_rss_mib": _s(70, 70, 71),
            }
        },
        "celery": {
            "solo": {
                "runs": [],
                "jobs_per_s": _s(600, 590, 610),
                "cpu_us_per_job": _s(800, 790, 820),
                "redis_commands_per_job": _s(9, 9, 9),
                "peak_rss_mib": _s(50, 50, 50),
            }
        },
    },
    "latency": {
        "jobyard": {"fixed": {"p99_ms": _s(4.0, 3.0, 5.0)}},
        "celery": {"fixed": {"p99_ms": _s(4.5, 4.0, 6.0)}},
    },
    "http": {
        "jobyard POST /v1/jobs": {"jobs_per_s": _s(500, 450, 520)},
        "jobyard POST /v1/jobs:batch (100)": {"jobs_per_s": _s(8000, 7000, 9000)},
        "flower async-apply": {"jobs_per_s": _s(400, 380, 420)},
    },
    "scale": {
        "queued_jobs": 1_000_000,
        "bytes_per_job": 1700.0,
        "fill_s": 20.0,
        "empty": {"queues_ms": 2.0, "metrics_ms": 3.0},
        "backlog": {"queues_ms": 2.5, "metrics_ms": 60.0},
    },
}


def test_figures_compare_medians_against_their_targets() -> None:
    got = [(f["figure"], f["measured"], f["met"]) for f in figures(REPORT)]
    assert got == [
        ("drain jobs/s vs bare Celery (solo)", "1.50× (900 vs 600)", True),
        ("Redis commands per job (solo)", "16.0", False),
        ("peak worker RSS vs bare Celery (solo)", "1.40× (70 vs 50 MiB)", False),
        ("enqueue→start p99 at 200/s vs bare Celery", "4.0 ms vs 4.5 ms", True),
        ("HTTP enqueue vs Flower async-apply", "1.25× (500 vs 400/s)", True),
        ("HTTP batch enqueue", "8,000 jobs/s", False),
        ("GET /v1/queues with 1,000,000 queued", "2.5 ms", True),
        ("/metrics scrape with 1,000,000 queued", "60.0 ms", False),
    ]


def test_markdown_tables_show_median_range_and_ratio() -> None:
    md = render_markdown(REPORT)
    assert (
        "| jobyard | 900 (880–950) | 1.50× | 1000 (990–1100) | 1.25× | 16.0 (16.0–16.0) "
        "| 70 (70–71) | 1.40× | – | – |"
    ) in md
    assert "| celery | 600 (590–610) | 1.00× |" in md
    assert "| /metrics scrape with 1,000,000 queued | < 50 ms | 60.0 ms | **no** |" in md
    assert "| 1700 | 20.0 | 2.0 → 2.5 | 3.0 → 60.0 |" in md
    assert "Test CPU, 2 cores, 24.0 GiB" in md


def test_percentiles_are_nearest_rank() -> None:
    values = [float(v) for v in range(1, 101)]
    assert [percentile(values, q) for q in (50, 95, 99, 100)] == [50.0, 95.0, 99.0, 100.0]
    assert percentile([7.0], 99) == 7.0
    s = latency_summary_ms([0.001, 0.002, 0.003, 0.004])
    assert (s["p50_ms"], s["p99_ms"], s["max_ms"], s["samples"]) == (2.0, 4.0, 4.0, 4)
    assert summary([3.0, 1.0, 2.0]) == {"median": 2.0, "min": 1.0, "max": 3.0, "n": 3}
