"""Proven end to end (issue 3): a real Prometheus over a running jobyard.

The API, one worker per queue and beat run as real processes, each serving `/metrics` on
its own port; the Debian `prometheus` binary scrapes them every second (jobs
`jobyard-api`, `jobyard-worker`, `jobyard-beat`, static label `namespace: e2e` as a
ServiceMonitor would add) and evaluates the shipped rule file, copied with every `for:`
shortened to `FOR_S` so the test takes seconds, not minutes. The thresholds are the
queues' own, from this test's jobyard.yaml.

The scenario: requests, two short Redis outages (the API answers 503: the 5xx panels
have data), jobs on every queue (on `reports` they also retry, fail and die), a beat
schedule; then queue `reports` loses its worker while jobs arrive until
JobyardQueueBacklogHigh and JobyardQueueNotConsumed fire, and gets it back until they
clear. No other alert may fire (but JobyardDeadLettersGrowing for the job sent to die).
Finally every dashboard query must return data over the test's window, and the panels
that should show what was done on purpose must show more than 0.

Own processes rather than `jobyard dev`: the dev stack stops as a whole when one child
dies, and this test stops one worker on purpose.

The figures (fired after N s, cleared after M s, queries with data) are printed (see them
with `pytest -rA`) and written to `monitoring-e2e.md`/`.json` in the test's tmp dir and in
pytest's base temp dir:

    .venv/bin/pytest -rA -p no:cacheprovider tests/e2e/test_monitoring_e2e.py \
        --basetemp=/tmp/jobyard-monitoring-e2e
"""

from __future__ import annotations

import shutil
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.monitoring.alert_rules import GROUPS, RULES_PATH, load_alerts
from tests.monitoring.dashboard_files import load_dashboards, queries, variable_queries
from tests.monitoring.prometheus_server import running_prometheus
from tests.monitoring.promql import substitute_variables
from tests.support.monitoring_stack import (
    Figures,
    PromClient,
    active,
    derive_rule_file,
    finite_values,
    firing,
    prometheus_config,
    promtool_check_rules,
    wait_for,
)
from tests.support.obs_scrape import OBS_JOBS, samples, try_scrape, value
from tests.support.processes import Proc
from tests.support.redis_server import RedisProcess, free_port

pytestmark = pytest.mark.integration

COMMAND = (
    ".venv/bin/pytest -rA -p no:cacheprovider tests/e2e/test_monitoring_e2e.py "
    "--basetemp=/tmp/jobyard-monitoring-e2e"
)
NAMESPACE = "e2e"
FOR_S = 5
"""Every rule's `for:` in the derived rule file."""
SCRAPE_INTERVAL_S = 1
WAIT_S = 90.0
"""Deadline of every wait (a loaded 2-core machine); polls are short."""
POLL_S = 0.25
RATE_INTERVAL = "30s"
"""What `$__rate_interval` becomes: long enough for two samples at every step."""

QUEUES = ("default", "emails", "reports")
STOPPED = "reports"
BACKLOG_THRESHOLD = 5
BACKLOG_JOBS = 8
FINISHED_ON_STOPPED = 2 + 5 + BACKLOG_JOBS
"""Jobs that finish on STOPPED (retries not counted): waves 1 and 2, then the backlog."""
SCHEDULE = "e2e-tick"
WARMUP_REQUESTS = 200
"""200s before the 503s, in two halves with a scrape in between so that `rate()` sees at
least half of them. The 503s are on purpose, but must not fire JobyardApiErrorRatioHigh:
2 errors in 200+ requests are 1%, under its 5%. (With 60, `rate()`'s extrapolation over
a few seconds of samples put the ratio above 5% for a moment: pending, not firing.)"""
API_ERROR_RATIO = (
    'sum(rate(jobyard_http_requests_total{status=~"5..", route!~"/healthz|/readyz|/metrics"}'
    '[5m])) / sum(rate(jobyard_http_requests_total{route!~"/healthz|/readyz|/metrics"}[5m]))'
)
"""The ratio JobyardApiErrorRatioHigh compares with 5%, as written in the rule (only
reported, to show the margin)."""

CONFIG = f"""
queues:
  - name: default
    concurrency: 1
    soft_time_limit_s: 5
    time_limit_s: 8
    shutdown_grace_s: 2
  - name: emails
    concurrency: 1
    soft_time_limit_s: 5
    time_limit_s: 8
    shutdown_grace_s: 2
  - name: {STOPPED}
    concurrency: 1
    soft_time_limit_s: 5
    time_limit_s: 8
    shutdown_grace_s: 2
    alerts:
      backlog_jobs: {BACKLOG_THRESHOLD}
schedules:
  - name: {SCHEDULE}
    task: jobyard.noop
    interval_s: 3
    queue: default
broker:
  max_retry_backoff_s: 5
limits:
  result_ttl_s: 3600
"""

RUNBOOKS = "https://github.com/jobyard/jobyard/blob/main/docs/runbooks/"
QUEUE_DASHBOARD = (
    f"https://grafana.example.com/d/jobyard-queue?var-queue={STOPPED}&var-namespace={NAMESPACE}"
)
EXPECTED_FIRING = {
    ("JobyardQueueBacklogHigh", STOPPED),
    ("JobyardQueueNotConsumed", STOPPED),
    # The one job sent to die (obs.doomed): a true alert, caused on purpose.
    ("JobyardDeadLettersGrowing", STOPPED),
}
"""(alertname, queue) of every alert allowed to fire during the test."""

NO_DATA_ALLOWED: dict[str, str] = {}
"""Dashboard query (as written, before substitution) -> why it may return no data here.
Empty: every jobyard query has data; only kube-state-metrics/KEDA ones are skipped."""

MUST_SHOW = (
    ("jobyard-api", "5xx by route (req/s)", 0, ".*"),
    ("jobyard-api", "5xx ratio over time", 0, ".*"),
    ("jobyard-queue", "Failure ratio by task", 0, STOPPED),
    ("jobyard-queue", "Dead letters over time", 0, STOPPED),
    ("jobyard-overview", "Waiting jobs by queue", 0, ".*"),
)
"""(dashboard, panel, target index, $queue) that must show more than 0 at some point:
what the test did on purpose (503s, failures, a dead letter, a backlog) is visible, not
just "data". (Target 1 of a panel is often its threshold line.)"""

TERMINAL = {"succeeded", "failed", "dead", "cancelled"}


@dataclass
class Stack:
    """The running jobyard: its Redis, processes and ports."""

    redis: RedisProcess
    api: Proc
    api_url: str
    http: httpx.Client
    workers: dict[str, Proc]
    worker_ports: dict[str, int]
    beat: Proc
    beat_port: int
    env: dict[str, str]

    def targets(self) -> dict[str, list[str]]:
        return {
            "jobyard-api": [self.api_url.removeprefix("http://")],
            "jobyard-worker": [f"127.0.0.1:{self.worker_ports[q]}" for q in QUEUES],
            "jobyard-beat": [f"127.0.0.1:{self.beat_port}"],
        }

    def enqueue(self, task: str, queue: str, **args: Any) -> str:
        response = self.http.post("/v1/jobs", json={"task": task, "queue": queue, "args": args})
        assert response.status_code == 201, response.text
        return str(response.json()["id"])

    def states(self, ids: list[str]) -> dict[str, str]:
        result: dict[str, str] = {}
        for job_id in ids:
            response = self.http.get(f"/v1/jobs/{job_id}")
            assert response.status_code == 200, response.text
            result[job_id] = response.json()["state"]
        return result

    def wait_terminal(self, ids: list[str]) -> dict[str, str]:
        def done() -> dict[str, str] | None:
            states = self.states(ids)
            return states if set(states.values()) <= TERMINAL else None

        states, _ = wait_for(f"jobs {ids} terminal", done, WAIT_S, interval_s=0.5)
        result: dict[str, str] = states
        return result

    def queue_stats(self, queue: str) -> dict[str, Any]:
        response = self.http.get(f"/v1/queues/{queue}")
        assert response.status_code == 200, response.text
        stats: dict[str, Any] = response.json()
        return stats

    def start_worker(self, spawn: Any, queue: str) -> Proc:
        port = str(self.worker_ports[queue])
        proc: Proc = spawn(
            "worker", "--queue", queue, env={**self.env, "JOBYARD_WORKER_METRICS_PORT": port}
        )
        self.workers[queue] = proc
        return proc


def distinct_free_ports(n: int) -> list[int]:
    ports: list[int] = []
    while len(ports) < n:
        port = free_port()
        if port not in ports:
            ports.append(port)
    return ports


@pytest.fixture
def durable_redis() -> Iterator[RedisProcess]:
    """This test's own redis-server (append-only file): it is stopped and started again
    for the 503s, which the session's shared Redis cannot be."""
    server = RedisProcess(appendonly=True).start()
    try:
        yield server
    finally:
        server.stop()
        shutil.rmtree(server.dir, ignore_errors=True)


@pytest.fixture
def stack(durable_redis: RedisProcess, spawn: Any, config_path: Path) -> Iterator[Stack]:
    config_path.write_text(CONFIG)
    env = {"JOBYARD_REDIS_URL": durable_redis.url, "JOBYARD_JOB_MODULES": OBS_JOBS}
    api_port, beat_port, *worker_ports = distinct_free_ports(2 + len(QUEUES))
    api = spawn("api", "--port", str(api_port), env={**env, "JOBYARD_API_PORT": str(api_port)})
    api_url = f"http://127.0.0.1:{api_port}"
    beat = spawn("beat", env={**env, "JOBYARD_BEAT_METRICS_PORT": str(beat_port)})
    http = httpx.Client(base_url=api_url, timeout=30)
    s = Stack(
        durable_redis,
        api,
        api_url,
        http,
        {},
        dict(zip(QUEUES, worker_ports, strict=True)),
        beat,
        beat_port,
        env,
    )
    for queue in QUEUES:
        s.start_worker(spawn, queue)
    try:
        wait_until_ready(s)
        yield s
    finally:
        http.close()


def _readyz(url: str) -> bool:
    try:
        return httpx.get(f"{url}/readyz", timeout=2).status_code == 200
    except httpx.HTTPError:
        return False


def wait_until_ready(s: Stack) -> None:
    """API ready, every worker consuming and registered, beat leading and ticking."""
    wait_for("API /readyz", lambda: _readyz(s.api_url), WAIT_S)
    for queue, proc in s.workers.items():
        proc.wait_for_log(" ready.", timeout_s=WAIT_S)
        wait_for(f"worker {queue} registered", lambda q=queue: s.queue_stats(q)["workers"], WAIT_S)
    beat_url = f"http://127.0.0.1:{s.beat_port}/metrics"

    def leading() -> bool:
        text = try_scrape(beat_url)
        return text is not None and value(samples(text), "jobyard_beat_leader") == 1

    wait_for("beat leads", leading, WAIT_S)

    def ticked() -> bool:
        text = try_scrape(f"{s.api_url}/metrics")
        return text is not None and "jobyard_beat_last_tick_timestamp_seconds " in text

    # Before Prometheus starts: an API with no beat tick yet is JobyardBeatDown.
    wait_for("beat tick exported by the API", ticked, WAIT_S)


def one_value(prom: PromClient, expr: str) -> float | None:
    result = prom.query(expr)
    assert len(result) <= 1, f"{expr}: {result}"
    return float(result[0]["value"][1]) if result else None


def redis_outage(s: Stack) -> float:
    """Stop Redis, POST a job (503), start Redis again; returns how long it was down."""
    started = time.monotonic()
    s.redis.stop()
    response = s.http.post("/v1/jobs", json={"task": "obs.ok", "queue": "default"})
    s.redis.start()
    down_s = time.monotonic() - started
    assert response.status_code == 503, response.text
    assert response.headers["content-type"].startswith("application/problem+json")
    assert response.json()["type"] == "urn:jobyard:problem:redis-unreachable"
    return down_s


def cause_5xx(s: Stack, prom: PromClient, figures: Figures) -> None:
    """Two 503s, each seen by a scrape of its own: the 5xx rate is above 0 in between."""
    warmup = (
        f'sum(jobyard_http_requests_total{{namespace="{NAMESPACE}", route="/v1/queues", '
        f'method="GET", status="200"}})'
    )
    for half in (1, 2):
        for _ in range(WARMUP_REQUESTS // 2):
            assert s.http.get("/v1/queues").status_code == 200
        wait_for(
            "warm-up requests scraped",
            lambda h=half: (one_value(prom, warmup) or 0) >= h * (WARMUP_REQUESTS // 2),
            WAIT_S,
        )
    series = (
        f'sum(jobyard_http_requests_total{{namespace="{NAMESPACE}", route="/v1/jobs", '
        f'method="POST", status="503"}})'
    )
    for n in (1, 2):
        figures.redis_outages_s.append(redis_outage(s))
        figures.http_5xx_caused += 1
        wait_for(f"503 number {n} scraped", lambda n=n: one_value(prom, series) == n, WAIT_S)
        wait_for(
            "redis_up 1 scraped again",
            lambda: one_value(prom, f'max(jobyard_redis_up{{namespace="{NAMESPACE}"}})') == 1,
            WAIT_S,
        )


def run_jobs(s: Stack, prom: PromClient) -> None:
    """Every outcome on `reports` (the dashboards' drill-down queue), successes elsewhere,
    in two waves with a scrape in between.

    A counter or histogram series that first appears already at its final value has no
    rate: `rate()` starts at the first sample. Real queues have traffic spread over time;
    the waves give each series a sample before and after a change (a burst right after a
    worker starts is invisible to `rate()`, see the report).
    """
    first: dict[str, str] = {s.enqueue("obs.ok", q, sleep_s=0.05): "succeeded" for q in QUEUES}
    first[s.enqueue("obs.broken", STOPPED)] = "failed"
    assert s.wait_terminal(list(first)) == first
    for queue in QUEUES:
        n = 2 if queue == STOPPED else 1  # `default` also runs the schedule's jobs
        counted = f'sum(jobyard_jobs_finished_total{{namespace="{NAMESPACE}", queue="{queue}"}})'
        wait_for(
            f"wave 1 of {queue} scraped",
            lambda c=counted, n=n: (one_value(prom, c) or 0) >= n,
            WAIT_S,
        )
    second: dict[str, str] = {}
    for queue in QUEUES:
        for _ in range(2):
            second[s.enqueue("obs.ok", queue, sleep_s=0.05)] = "succeeded"
    second[s.enqueue("obs.flaky", STOPPED)] = "succeeded"
    second[s.enqueue("obs.broken", STOPPED)] = "failed"
    second[s.enqueue("obs.doomed", STOPPED)] = "dead"
    assert s.wait_terminal(list(second)) == second


def wait_alerts(
    prom: PromClient, names: tuple[str, ...], since: dict[str, float], *, fire: bool
) -> tuple[dict[str, float], list[dict[str, Any]]]:
    """Poll /api/v1/alerts until every alert `names` on STOPPED fires (fire=True) or is no
    longer active (fire=False); name -> seconds after `since[name]`, and the last alerts."""
    seen: dict[str, float] = {}
    last: list[dict[str, Any]] = []
    fresh = f'max(jobyard_queue_depth{{namespace="{NAMESPACE}", queue="{STOPPED}"}})'

    def all_seen() -> bool:
        nonlocal last
        last = prom.alerts()
        now = time.time()
        for name in names:
            if fire:
                hit = firing(last, name, queue=STOPPED) is not None
            else:
                # Cleared, not blind: a failed scrape would also end the alert.
                hit = not active(last, name, queue=STOPPED) and one_value(prom, fresh) is not None
            if hit and name not in seen:
                seen[name] = now - since[name]
        return len(seen) == len(names)

    what = "firing" if fire else "cleared"
    wait_for(f"{names} {what}", all_seen, WAIT_S, interval_s=POLL_S)
    return seen, last


def assert_backlog_alerts(alerts: list[dict[str, Any]]) -> None:
    """Exact labels and annotations of the two alerts as Prometheus rendered them."""
    rules = {a.name: a for a in load_alerts()}
    backlog = firing(alerts, "JobyardQueueBacklogHigh", queue=STOPPED)
    assert backlog is not None
    assert backlog["labels"] == {
        "alertname": "JobyardQueueBacklogHigh",
        "namespace": NAMESPACE,
        "queue": STOPPED,
        "severity": "warning",
    }
    assert backlog["annotations"] == {
        "summary": rules["JobyardQueueBacklogHigh"].annotations["summary"],
        "description": (
            f"Queue {STOPPED} has had more jobs waiting than its backlog threshold "
            f"({BACKLOG_THRESHOLD}) for 10 minutes: {BACKLOG_JOBS} jobs are waiting now."
        ),
        "runbook_url": f"{RUNBOOKS}queue-backlog-high.md#jobyardqueuebackloghigh",
        "dashboard_url": QUEUE_DASHBOARD,
    }
    assert float(backlog["value"]) == BACKLOG_JOBS
    idle = firing(alerts, "JobyardQueueNotConsumed", queue=STOPPED)
    assert idle is not None
    assert idle["labels"] == {
        "alertname": "JobyardQueueNotConsumed",
        "namespace": NAMESPACE,
        "queue": STOPPED,
        "severity": "critical",
    }
    assert idle["annotations"] == {
        "summary": rules["JobyardQueueNotConsumed"].annotations["summary"],
        "description": (
            f"Jobs are waiting in queue {STOPPED} ({BACKLOG_JOBS} now) and no worker has been "
            "consuming it for 5 minutes: the autoscaler did not start a worker, or workers "
            "cannot start."
        ),
        "runbook_url": f"{RUNBOOKS}queue-not-consumed.md#jobyardqueuenotconsumed",
        "dashboard_url": QUEUE_DASHBOARD,
    }


def assert_dead_letter_alert(alerts: list[dict[str, Any]]) -> None:
    dead = firing(alerts, "JobyardDeadLettersGrowing", queue=STOPPED)
    assert dead is not None, alerts
    assert dead["labels"] == {
        "alertname": "JobyardDeadLettersGrowing",
        "namespace": NAMESPACE,
        "queue": STOPPED,
        "severity": "warning",
    }
    assert dead["annotations"]["description"] == (
        f"The dead letters of queue {STOPPED} (jobs that failed their last attempt) grew by "
        "1 in the last 30 minutes, to 1."
    )
    assert dead["annotations"]["runbook_url"] == (
        f"{RUNBOOKS}dead-letters-growing.md#jobyarddeadlettersgrowing"
    )


def alerts_over(prom: PromClient, state: str, window_s: float) -> set[tuple[str, str]]:
    """(alertname, queue or "") of every alert in `state` at any evaluation in the window."""
    result = prom.query(f'max_over_time(ALERTS{{alertstate="{state}"}}[{window_s:.0f}s])')
    return {(r["metric"]["alertname"], r["metric"].get("queue", "")) for r in result}


def check_dashboards(
    prom: PromClient, start: float, end: float, figures: Figures
) -> tuple[list[str], dict[tuple[str, str, int, str], float]]:
    """Range-query every dashboard query over [start, end]: the problems found, and the
    largest value of each (dashboard, panel, target index, $queue) that has data."""
    problems: list[str] = []
    largest: dict[tuple[str, str, int, str], float] = {}
    targets_seen: dict[tuple[str, str], int] = {}
    window = f"{end - start:.0f}s"
    all_queries = queries()
    figures.dashboard_queries = len(all_queries)
    for q in all_queries:
        index = targets_seen.get((q.dashboard, q.panel), 0)
        targets_seen[(q.dashboard, q.panel)] = index + 1
        if q.external_sources:
            figures.queries_external_skipped.append(f"{q.dashboard} / {q.panel}: {q.expr}")
            continue
        per_queue = q.dashboard == "jobyard-queue" and "$queue" in q.expr
        for queue in QUEUES if per_queue else (".*",):
            plain = substitute_variables(
                q.expr,
                {
                    "namespace": NAMESPACE,
                    "queue": queue,
                    "__rate_interval": RATE_INTERVAL,
                    "__interval": f"{SCRAPE_INTERVAL_S}s",
                    "__range": window,
                },
            )
            figures.queries_checked += 1
            kind, result = prom.query_range(plain, start, end, SCRAPE_INTERVAL_S)
            where = f"{q.dashboard} / {q.panel} ($queue={queue}): {plain}"
            values = finite_values(result)
            if kind != "matrix":
                problems.append(f"{where}: resultType {kind}")
            elif values:
                figures.queries_with_data += 1
                largest[(q.dashboard, q.panel, index, queue)] = max(values)
            elif q.expr in NO_DATA_ALLOWED:
                figures.queries_without_data_allowed.append(f"{where} ({NO_DATA_ALLOWED[q.expr]})")
            else:
                problems.append(f"{where}: no data")
    return problems, largest


def check_variables(prom: PromClient) -> None:
    """The dashboards' `namespace` and `queue` variables list what is running."""
    for uid, dashboard in load_dashboards().items():
        for name, query in variable_queries(dashboard).items():
            label = query.removeprefix("label_values(").rsplit(",", 1)[1].strip(" )")
            match = substitute_variables(
                query.removeprefix("label_values(").rsplit(",", 1)[0], {"namespace": NAMESPACE}
            )
            expected = [NAMESPACE] if name == "namespace" else sorted(QUEUES)
            assert prom.label_values(label, match) == expected, (uid, name, query)


def scrape_health(prom: PromClient, s: Stack, window_s: float, figures: Figures) -> None:
    """Failed scrapes and the slowest scrape of every target over the window."""
    names = {f"127.0.0.1:{port}": f"worker {q}" for q, port in s.worker_ports.items()}
    names[s.api_url.removeprefix("http://")] = "api"
    names[f"127.0.0.1:{s.beat_port}"] = "beat"
    window = f"{window_s:.0f}s"
    for r in prom.query(f"count_over_time(up[{window}]) - sum_over_time(up[{window}])"):
        figures.failed_scrapes[names[r["metric"]["instance"]]] = float(r["value"][1])
    for r in prom.query(f"max_over_time(scrape_duration_seconds[{window}])"):
        seconds = round(float(r["value"][1]), 3)
        figures.max_scrape_duration_s[names[r["metric"]["instance"]]] = seconds


@pytest.mark.timeout(300)
def test_alerts_fire_and_clear_and_every_dashboard_query_has_data(
    stack: Stack, spawn: Any, tmp_path: Path, tmp_path_factory: pytest.TempPathFactory
) -> None:
    figures = Figures(
        command=COMMAND,
        for_s=FOR_S,
        scrape_interval_s=SCRAPE_INTERVAL_S,
        stopped_queue=STOPPED,
        backlog_threshold=BACKLOG_THRESHOLD,
        backlog_enqueued=BACKLOG_JOBS,
    )
    rules = tmp_path / "jobyard-alerts-e2e.yaml"
    alert_names = derive_rule_file(RULES_PATH, rules, FOR_S)
    assert f"SUCCESS: {len(alert_names)} rules found" in promtool_check_rules(rules)
    assert {a.name for a in load_alerts(rules)} == {a.name for a in load_alerts()}
    assert {a.for_ for a in load_alerts(rules)} == {f"{FOR_S}s"}

    workdir = tmp_path / "prometheus"
    workdir.mkdir()
    scraping = prometheus_config(None, stack.targets(), NAMESPACE, SCRAPE_INTERVAL_S)
    with running_prometheus(workdir, scraping) as server, PromClient(server.url) as prom:
        start = time.time()
        # Rules only once every target is scraped: Prometheus applies discovered targets
        # up to 5 s after it starts, and with every `for:` at 5 s, JobyardMetricsAbsent
        # would fire on that start-up gap (the shipped 10m covers it).
        wait_for(
            "every target up",
            lambda: [t["health"] for t in prom.targets()] == ["up"] * (2 + len(QUEUES)),
            WAIT_S,
        )
        server.config_path.write_text(
            prometheus_config(rules, stack.targets(), NAMESPACE, SCRAPE_INTERVAL_S)
        )
        prom.reload()
        loaded = wait_for("rules loaded", prom.rule_groups, WAIT_S)[0]
        assert sorted(g["name"] for g in loaded) == sorted(GROUPS)

        # 1. Traffic, two short Redis outages (503s), jobs with every outcome, a schedule.
        cause_5xx(stack, prom, figures)
        run_jobs(stack, prom)
        sent = f'sum(jobyard_jobs_enqueued_total{{namespace="{NAMESPACE}", task="jobyard.noop"}})'
        wait_for("the schedule ran twice", lambda: (one_value(prom, sent) or 0) >= 2, WAIT_S)

        # 2. `reports` loses its worker; jobs keep coming until its alerts fire.
        assert stack.workers[STOPPED].stop() == 0
        wait_for("worker deregistered", lambda: stack.queue_stats(STOPPED)["workers"] == 0, WAIT_S)
        became_true: dict[str, float] = {}
        for n in range(1, BACKLOG_JOBS + 1):
            stack.enqueue("obs.ok", STOPPED)
            if n == 1:
                became_true["JobyardQueueNotConsumed"] = time.time()
            if n == BACKLOG_THRESHOLD + 1:
                became_true["JobyardQueueBacklogHigh"] = time.time()
        assert stack.queue_stats(STOPPED)["depth"] == BACKLOG_JOBS
        names = ("JobyardQueueBacklogHigh", "JobyardQueueNotConsumed")
        fired, alerts = wait_alerts(prom, names, became_true, fire=True)
        figures.alerts_fired_after_s = {k: round(v, 1) for k, v in sorted(fired.items())}
        assert_backlog_alerts(alerts)
        # `for:` was honoured: nothing fired sooner than FOR_S after its condition held
        # (less one interval: a scrape may read Redis just before the 201 reaches us).
        assert all(v >= FOR_S - SCRAPE_INTERVAL_S for v in fired.values()), fired
        wait_for(
            "JobyardDeadLettersGrowing firing",
            lambda: firing(prom.alerts(), "JobyardDeadLettersGrowing", queue=STOPPED),
            WAIT_S,
        )
        assert_dead_letter_alert(prom.alerts())

        # 3. The worker comes back: the backlog drains and both alerts clear.
        restarted = time.time()
        worker = stack.start_worker(spawn, STOPPED)
        worker.wait_for_log(" ready.", timeout_s=WAIT_S)
        figures.worker_ready_after_s = round(time.time() - restarted, 1)
        cleared, alerts = wait_alerts(prom, names, dict.fromkeys(names, restarted), fire=False)
        figures.alerts_cleared_after_s = {k: round(v, 1) for k, v in sorted(cleared.items())}
        wait_for("backlog drained", lambda: stack.queue_stats(STOPPED)["depth"] == 0, WAIT_S)
        wait_for(
            "restarted worker scraped",
            lambda: (
                one_value(
                    prom,
                    f'count(jobyard_worker_info{{namespace="{NAMESPACE}", queue="{STOPPED}"}})',
                )
                == 1
            ),
            WAIT_S,
        )
        # Let the restarted worker's finished jobs be scraped twice, for its rates.
        finished = (
            f'sum(jobyard_jobs_finished_total{{namespace="{NAMESPACE}", queue="{STOPPED}", '
            f'outcome="succeeded"}})'
        )
        wait_for(
            "backlog jobs counted",
            lambda: (one_value(prom, finished) or 0) >= BACKLOG_JOBS,
            WAIT_S,
        )

        # 4. No false alarm: over the whole window only the alerts caused on purpose fired.
        end = time.time()
        window_s = end - start + 5
        fired_ever = alerts_over(prom, "firing", window_s)
        figures.fired_during_test = sorted(f"{n}{{queue={q}}}" for n, q in fired_ever)
        figures.pending_only_during_test = sorted(
            f"{n}{{queue={q}}}" for n, q in alerts_over(prom, "pending", window_s) - fired_ever
        )
        assert fired_ever == EXPECTED_FIRING
        now_active = {(a["labels"]["alertname"], a["labels"].get("queue", "")) for a in alerts}
        assert now_active == {("JobyardDeadLettersGrowing", STOPPED)}

        # 5. Every dashboard query returns data over the window (external ones skipped).
        check_variables(prom)
        problems, largest = check_dashboards(prom, start, end, figures)
        figures.panels_above_zero = {
            f"{uid} / {panel} #{index} ($queue={queue})": largest.get(key, 0.0)
            for key in MUST_SHOW
            for uid, panel, index, queue in [key]
        }
        scrape_health(prom, stack, window_s, figures)
        counted = (
            f'sum(increase(jobyard_jobs_finished_total{{namespace="{NAMESPACE}", '
            f'queue="{STOPPED}", outcome!="retried"}}[{window_s:.0f}s]))'
        )
        figures.finished_jobs_seen_by_increase = (FINISHED_ON_STOPPED, one_value(prom, counted))
        worst = one_value(prom, f"max_over_time(({API_ERROR_RATIO})[{window_s:.0f}s:1s])")
        figures.api_error_ratio_max = round(worst or 0.0, 4)
        figures.test_window_s = end - start

    report = figures.markdown()
    written = figures.write(tmp_path)
    written += figures.write(tmp_path_factory.getbasetemp())
    print("\n" + report + "\n".join(f"written to {p}" for p in written))
    assert problems == [], "\n".join(problems)
    assert all(v > 0 for v in figures.panels_above_zero.values()), figures.panels_above_zero
    assert figures.queries_with_data + len(figures.queries_without_data_allowed) == (
        figures.queries_checked
    )
