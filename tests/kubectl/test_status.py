"""`kubectl jobyard status`: queue figures from the real API through the service proxy,
workload figures from the fake cluster's Deployments, ScaledObjects and HPAs."""

from __future__ import annotations

import json
import re
from pathlib import Path

import jsonschema
import yaml

from jobyard.kubectl.status import StatusReport
from tests.kubectl.cluster import install
from tests.kubectl.conftest import ADMIN_TOKEN, READ_TOKEN, Apis, Cluster

SCHEMA_PATH = (
    Path(__file__).resolve().parents[2] / "services/jobyard/kubectl/schemas/status.schema.json"
)


def _cluster_state(cluster: Cluster) -> None:
    jobs = cluster.jobs
    jobs.set_replicas("jobyard-api", 2)
    jobs.set_replicas("jobyard-beat", 1)
    jobs.set_replicas("jobyard-worker-default", 2, ready=1)
    jobs.set_replicas("jobyard-worker-emails", 0)
    jobs.set_replicas("jobyard-worker-reports", 0)
    jobs.keda_ready("jobyard-worker-default", active=True)
    jobs.keda_ready("jobyard-worker-emails", error="Redis: dial tcp 10.96.0.20:6379: i/o timeout")
    so = jobs.scaled_object("jobyard-worker-reports")
    so["metadata"]["annotations"] = {"autoscaling.keda.sh/paused-replicas": "0"}
    jobs.keda_ready("jobyard-worker-reports", paused=True)


def _backlog(apis: Apis) -> None:
    for priority in (0, 0, 7):
        apis.enqueue("jobyard.noop", "emails", priority=priority)
    apis.dead_letter()


def test_table_shows_queues_workloads_api_and_beat(cluster: Cluster, clean_redis: Apis) -> None:
    _cluster_state(cluster)
    _backlog(clean_redis)
    result = cluster.run("status")
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    assert lines[0] == "RELEASE  jobyard (namespace jobs)"
    assert lines[1] == "API      2/2 ready, answering"
    assert re.fullmatch(r"BEAT     1/1 ready, last tick \ds ago", lines[2]), lines[2]
    assert lines[3] == ""
    assert lines[4].split() == [
        "QUEUE",
        "BACKLOG",
        "BY",
        "PRIORITY",
        "OLDEST",
        "RUNNING",
        "DEAD",
        "WORKERS",
        "AUTOSCALING",
        "MIN-MAX",
    ]
    rows = {line.split()[0]: line for line in lines[5:]}
    assert re.fullmatch(r"default\s+0\s+-\s+-\s+0\s+1\s+1/2\s+active\s+1-10", rows["default"]), (
        rows["default"]
    )
    assert re.fullmatch(
        r"emails\s+3\s+0:2 6:1\s+\d+s\s+0\s+0\s+0/0\s+error: Redis: dial tcp 10\.96\.0\.20:6379: "
        r"i/o timeout\s+0-5",
        rows["emails"],
    ), rows["emails"]
    assert re.fullmatch(r"reports\s+0\s+-\s+-\s+0\s+0\s+0/0\s+paused at 0\s+0-3", rows["reports"])
    assert len(lines) == 8


def test_json_matches_the_committed_schema_and_the_cluster(
    cluster: Cluster, clean_redis: Apis
) -> None:
    _cluster_state(cluster)
    _backlog(clean_redis)
    result = cluster.run("status", "-o", "json")
    assert result.returncode == 0, result.stderr
    report = json.loads(result.stdout)
    schema = json.loads(SCHEMA_PATH.read_text(encoding="utf-8"))
    jsonschema.Draft202012Validator.check_schema(schema)
    jsonschema.validate(report, schema)
    assert report["release"] == "jobyard" and report["fullname"] == "jobyard"
    assert report["api"] == {
        "deployment": "jobyard-api",
        "desired": 2,
        "ready": 2,
        "reachable": True,
        "error": None,
    }
    assert report["beat"]["strategy"] == "Recreate"
    assert 0 <= report["beat"]["last_tick_age_s"] < 10
    queues = {q["name"]: q for q in report["queues"]}
    assert [q["name"] for q in report["queues"]] == ["default", "emails", "reports"]
    emails = queues["emails"]
    assert emails["backlog"] == 3
    assert emails["backlog_by_priority"] == {"0": 2, "3": 0, "6": 1, "9": 0}
    assert emails["oldest_job_age_s"] >= 0
    assert emails["autoscaling"] == {
        "kind": "keda",
        "state": "error",
        "scaled_object": "jobyard-worker-emails",
        "hpa": "keda-hpa-jobyard-worker-emails",
        "ready": False,
        "active": False,
        "fallback": False,
        "paused": False,
        "paused_replicas": None,
        "min_replicas": 0,
        "max_replicas": 5,
        "hpa_desired_replicas": 0,
        "errors": ["Redis: dial tcp 10.96.0.20:6379: i/o timeout"],
    }
    assert queues["default"]["dead_letters"] == 1
    assert queues["default"]["live_workers"] == 1
    assert queues["default"]["workers"] == {
        "deployment": "jobyard-worker-default",
        "desired": 2,
        "ready": 1,
    }
    assert queues["reports"]["autoscaling"]["state"] == "paused"
    assert queues["reports"]["autoscaling"]["paused_replicas"] == 0
    as_yaml = cluster.run("status", "-o", "yaml")
    assert as_yaml.returncode == 0
    from_yaml = yaml.safe_load(as_yaml.stdout)
    from_yaml["beat"]["last_tick_age_s"] = report["beat"]["last_tick_age_s"]
    for q in from_yaml["queues"]:
        q["oldest_job_age_s"] = queues[q["name"]]["oldest_job_age_s"]
    assert from_yaml == report


def test_committed_schema_is_the_models_schema() -> None:
    """The schema file is generated from the output model: regenerate it when this fails
    (python -c 'from jobyard.kubectl.status import StatusReport, json; ...')."""
    committed = json.loads(SCHEMA_PATH.read_text(encoding="utf-8"))
    assert committed == StatusReport.model_json_schema()


def test_schema_rejects_a_changed_shape(cluster: Cluster, clean_redis: Apis) -> None:
    _cluster_state(cluster)
    report = json.loads(cluster.run("status", "-o", "json").stdout)
    schema = json.loads(SCHEMA_PATH.read_text(encoding="utf-8"))
    report["queues"][0]["backlog_total"] = report["queues"][0].pop("backlog")
    errors = list(jsonschema.Draft202012Validator(schema).iter_errors(report))
    assert errors


def test_requests_are_reads_with_the_chart_labels(cluster: Cluster, clean_redis: Apis) -> None:
    _cluster_state(cluster)
    assert cluster.run("status").returncode == 0
    assert cluster.requests() == [
        (
            "GET",
            "/apis/apps/v1/namespaces/jobs/deployments",
            "labelSelector=app.kubernetes.io/name=jobyard",
        ),
        (
            "GET",
            "/apis/keda.sh/v1alpha1/namespaces/jobs/scaledobjects",
            "labelSelector=app.kubernetes.io/name=jobyard,app.kubernetes.io/instance=jobyard",
        ),
        ("GET", "/apis/autoscaling/v2/namespaces/jobs/horizontalpodautoscalers", ""),
        ("GET", "/api/v1/namespaces/jobs/services/jobyard-api", ""),
        ("GET", "/api/v1/namespaces/jobs/services/jobyard-api:8000/proxy/v1/queues", ""),
        ("GET", "/api/v1/namespaces/jobs/services/jobyard-api:8000/proxy/metrics", ""),
    ]
    proxied = [r for r in cluster.api.requests if "/proxy/" in r.path]
    assert all(r.status == 200 for r in proxied)
    assert all("x-jobyard-token" not in r.headers for r in proxied)


def test_api_unreachable_still_shows_workloads_and_exits_1(cluster: Cluster) -> None:
    _cluster_state(cluster)
    cluster.api.proxy_targets[("jobs", "jobyard-api")] = None
    result = cluster.run("status")
    assert result.returncode == 1
    lines = result.stdout.splitlines()
    assert lines[1] == "API      2/2 ready, NOT answering"
    assert re.fullmatch(r"default\s+\?\s+\?\s+\?\s+\?\s+\?\s+1/2\s+active\s+1-10", lines[5])
    assert lines[-1] == (
        "API error: the jobyard API of release 'jobyard' is unreachable through the Kubernetes "
        'service proxy (jobyard-api:8000): no endpoints available for service "jobyard-api". '
        "Are its pods ready? `kubectl -n jobs get pods -l app.kubernetes.io/name=jobyard,"
        "app.kubernetes.io/instance=jobyard,app.kubernetes.io/component=api`"
    )
    as_json = cluster.run("status", "-o", "json")
    assert as_json.returncode == 1
    report = json.loads(as_json.stdout)
    assert report["api"]["reachable"] is False
    assert report["queues"][0]["backlog"] is None
    assert "unreachable through the Kubernetes service proxy" in as_json.stderr


def test_queues_without_keda_show_the_cpu_hpa_or_fixed_replicas(
    cluster: Cluster, clean_redis: Apis
) -> None:
    plain = install(
        cluster.api,
        {"keda": {"enabled": False}, "workers": {"cpuHpa": {"enabled": True}}},
        "plain",
        "plain",
    )
    cluster.api.proxy_targets[("plain", "plain-jobyard-api")] = clean_redis.open_url
    plain.set_replicas("plain-jobyard-worker-default", 2)
    cluster.api.keda_installed = False
    result = cluster.run("status", "-n", "plain", "-o", "json")
    assert result.returncode == 0, result.stderr
    queues = {q["name"]: q for q in json.loads(result.stdout)["queues"]}
    assert queues["default"]["autoscaling"] == {
        "kind": "hpa",
        "state": "hpa",
        "scaled_object": None,
        "hpa": "plain-jobyard-worker-default",
        "ready": None,
        "active": None,
        "fallback": None,
        "paused": False,
        "paused_replicas": None,
        "min_replicas": 1,
        "max_replicas": 10,
        "hpa_desired_replicas": None,
        "errors": [],
    }
    assert queues["default"]["workers"]["desired"] == 2
    # The KEDA API is absent (404 from the API server): no ScaledObject, no error.
    assert any(
        r.path == "/apis/keda.sh/v1alpha1/namespaces/plain/scaledobjects" and r.status == 404
        for r in cluster.api.requests
    )
    fixed = install(cluster.api, {"keda": {"enabled": False}}, "fixed", "fixed")
    cluster.api.proxy_targets[("fixed", "fixed-jobyard-api")] = clean_redis.open_url
    del fixed
    table = cluster.run("status", "-n", "fixed")
    assert table.returncode == 0, table.stderr
    assert re.search(r"^default .* none \(fixed replicas\)\s+-$", table.stdout, flags=re.M)


def test_token_from_the_release_secret_travels_in_x_jobyard_token(
    cluster: Cluster, clean_redis: Apis
) -> None:
    result = cluster.run("status", "-n", "secure", "-o", "json")
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout)["api"]["reachable"] is True
    assert ("GET", "/api/v1/namespaces/secure/secrets/secure-jobyard", "") in cluster.requests()
    proxied = [r for r in cluster.api.requests if "/proxy/v1/" in r.path]
    assert [r.headers.get("x-jobyard-token") for r in proxied] == [READ_TOKEN]
    # Authorization carries the operator's Kubernetes credentials (the API server removes it).
    assert [r.headers["authorization"] for r in proxied] == ["Bearer k8s-admin-token"]


def test_without_a_token_the_error_says_how_to_get_one(cluster: Cluster) -> None:
    result = cluster.run("status", "-n", "secure", user="viewer")
    assert result.returncode == 1
    assert result.stdout.splitlines()[1] == "API      0/2 ready, answering with an error"
    assert "API error: Authentication required (401): send 'Authorization: Bearer <token>'" in (
        result.stdout
    )
    assert "pass --api-token or set JOBYARD_API_TOKEN" in result.stdout
    assert "you may not read Secret 'secure-jobyard' (key 'api-tokens')" in result.stdout
    with_flag = cluster.run("status", "-n", "secure", "--api-token", READ_TOKEN, user="viewer")
    assert with_flag.returncode == 0, with_flag.stdout
    with_env = cluster.run(
        "status", "-n", "secure", user="viewer", env={"JOBYARD_API_TOKEN": ADMIN_TOKEN}
    )
    assert with_env.returncode == 0, with_env.stdout
    wrong = cluster.run("status", "-n", "secure", "--api-token", "nope-nope-nope", user="viewer")
    assert wrong.returncode == 1
    assert "Forbidden (403): the bearer token is not valid" in wrong.stdout
