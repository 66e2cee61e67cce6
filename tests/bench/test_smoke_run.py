"""`python -m bench --smoke`: the whole harness runs end to end on tiny numbers (every
system, every workload) and writes sane reports, so it cannot rot between real runs."""

from __future__ import annotations

import json
import subprocess
import sys
from typing import Any

import pytest

from tests.conftest import ROOT

pytestmark = pytest.mark.integration

DRAIN_SYSTEMS = ["jobyard", "celery", "rq-simple", "rq-fork", "arq", "dramatiq"]


@pytest.fixture(scope="module")
def smoke(tmp_path_factory: pytest.TempPathFactory) -> tuple[dict[str, Any], str]:
    out = tmp_path_factory.mktemp("bench-results")
    done = subprocess.run(
        [sys.executable, "-m", "bench", "--smoke", "--out", str(out)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=240,
        check=False,
    )
    assert done.returncode == 0, done.stdout[-4000:] + done.stderr[-4000:]
    assert "FAILED" not in done.stdout, done.stdout
    md = sorted(out.glob("*-smoke.md"))
    js = sorted(out.glob("*-smoke.json"))
    assert [p.name.startswith("latest-") for p in md] == [False, True]
    assert len(js) == 2
    return json.loads((out / "latest-smoke.json").read_text()), (
        out / "latest-smoke.md"
    ).read_text()


def test_drain_runs_every_job_of_every_system(smoke: tuple[dict[str, Any], str]) -> None:
    report, _ = smoke
    n = report["plan"]["drain_jobs"]
    assert list(report["drain"]) == DRAIN_SYSTEMS
    cpu_us: list[float] = []
    for name, modes in report["drain"].items():
        assert list(modes) == ["solo"], name
        (run,) = modes["solo"]["runs"]
        assert "error" not in run, (name, run)
        assert (run["jobs"], run["capped"]) == (n, False), name
        assert run["jobs_per_s"] > 0 and run["elapsed_s"] > 0, name
        # CPU time is read from /proc in clock ticks (10 ms): the smoke's few jobs of a
        # lean system can cost less than one tick, so one system may read 0.
        assert 0 <= run["cpu_us_per_job"] < 1_000_000, name
        cpu_us.append(run["cpu_us_per_job"])
        assert run["peak_rss_mib"] > 10, name
        assert 5 < run["peak_pss_mib"] <= run["peak_rss_mib"], name
        assert modes["solo"]["jobs_per_s"]["n"] == 1
    assert sum(v > 0 for v in cpu_us) >= len(cpu_us) - 1, cpu_us


def test_drain_counts_each_systems_redis_commands(smoke: tuple[dict[str, Any], str]) -> None:
    drain = smoke[0]["drain"]

    def per_job(name: str) -> float:
        return float(drain[name]["solo"]["runs"][0]["redis_commands_per_job"])

    # Celery's per-job commands: BRPOP, MULTI ZADD HSET EXEC (unacked), MULTI ZREM HDEL EXEC
    # (ack). jobyard's worker on a busy queue: the take script (EVALSHA, and inside it RPOP,
    # ZADD HSET for unacked, HMGET HSET ZADD to start the job); the ack with the success
    # write (HSET EXPIRE ZREM ZREM, ZREM HDEL). The first message of the drain comes by
    # BRPOP (and is started in the same way, by the start script), and one more take finds
    # the list empty. A periodic command (heartbeat, unacked restore) may fall in the window.
    assert 9.0 <= per_job("celery") < 9.5
    assert 12.0 <= per_job("jobyard") <= 14.0  # the figure: at most 14
    jobyard_calls = drain["jobyard"]["solo"]["runs"][0]["redis_commands"]
    n = smoke[0]["plan"]["drain_jobs"]
    assert n <= jobyard_calls["evalsha"] <= n + 2
    assert jobyard_calls["rpop"] >= n - 1  # taken by the script, not BRPOP
    assert jobyard_calls.get("brpop", 0) <= 3


def test_latency_stamps_every_job(smoke: tuple[dict[str, Any], str]) -> None:
    report, _ = smoke
    plan = report["plan"]
    sent = int(plan["latency_rate_per_s"] * plan["latency_duration_s"])
    assert list(report["latency"]) == DRAIN_SYSTEMS
    for name, block in report["latency"].items():
        (run,) = block["runs"]
        assert "error" not in run, (name, run)
        fixed = run["fixed"]
        assert (fixed["samples"], fixed["sent"]) == (sent, sent), name
        assert 0 < fixed["p50_ms"] <= fixed["p95_ms"] <= fixed["p99_ms"] <= fixed["max_ms"]
        assert run["near_saturation"]["samples"] == run["near_saturation"]["sent"], name


def test_http_and_scale_measure_the_api_and_flower(smoke: tuple[dict[str, Any], str]) -> None:
    report, _ = smoke
    assert list(report["http"]) == [
        "jobyard POST /v1/jobs",
        "jobyard POST /v1/jobs:batch (100)",
        "flower async-apply",
    ]
    for name, block in report["http"].items():
        (run,) = block["runs"]
        assert "error" not in run, (name, run)
        assert run["jobs_per_s"] > 0 and run["server_cpu_us_per_job"] > 0, name
    batch = report["http"]["jobyard POST /v1/jobs:batch (100)"]["runs"][0]
    assert batch["jobs_per_s"] == pytest.approx(100 * batch["requests_per_s"])
    scale = report["scale"]
    assert scale["queued_jobs"] == report["plan"]["scale_jobs"]
    assert 500 < scale["bytes_per_job"] < 20_000
    assert set(scale["backlog"]) == {"queues_ms", "metrics_ms"}


def test_markdown_has_every_section_and_the_figures(smoke: tuple[dict[str, Any], str]) -> None:
    report, md = smoke
    for heading in ("## Figures", "## Drain", "## Latency", "## HTTP enqueue", "## Scale"):
        assert heading in md
    names = [f["figure"] for f in report["figures"]]
    assert names == [
        "drain jobs/s vs bare Celery (solo)",
        "Redis commands per job (solo)",
        "peak worker RSS vs bare Celery (solo)",
        "enqueue→start p99 at 50/s vs bare Celery",
        "HTTP enqueue vs Flower async-apply",
        "HTTP batch enqueue",
        "GET /v1/queues with 2,000 queued",
        "/metrics scrape with 2,000 queued",
    ]
    assert all(isinstance(f["met"], bool) for f in report["figures"])
    assert report["machine"]["cores"] and report["machine"]["redis_server"].count(".") == 2
