"""`drain`: pause at 0 workers, then wait until no worker pod is left and the API counts no
job in progress. KEDA and the kubelet are played by the test: on the patch, the real worker
of the queue gets SIGTERM and its pod goes when the process exits."""

from __future__ import annotations

import json
import signal
import threading
from collections.abc import Iterator

import pytest

from tests.kubectl.cluster import install
from tests.kubectl.conftest import Apis, Cluster
from tests.kubectl.fake_apiserver import Attributes, Obj
from tests.kubectl.gate_jobs import GATE_KEY
from tests.support.processes import Proc, wait_until

SO = "jobyard-worker-reports"


@pytest.fixture
def reports_worker(clean_redis: Apis) -> Iterator[Proc]:
    proc = Proc(["worker", "--queue", "reports"], clean_redis.env, clean_redis.tmp / "reports.log")

    def live() -> bool:
        with clean_redis.http() as http:
            return bool(http.get("/v1/queues/reports").json()["workers"] >= 1)

    wait_until(live, timeout_s=60, interval_s=0.2)
    yield proc
    proc.stop()


def _play_keda(cluster: Cluster, apis: Apis, worker: Proc, pod: str) -> list[str]:
    """On paused-replicas=0: scale the Deployment to 0 and SIGTERM the worker; once the
    plugin has seen the running job, let it finish; remove the pod when the process has
    exited (as the kubelet does)."""
    events: list[str] = []

    def on_patch(attrs: Attributes, obj: Obj) -> None:
        annotations = obj["metadata"].get("annotations") or {}
        if attrs.name != SO or annotations.get("autoscaling.keda.sh/paused-replicas") != "0":
            return
        cluster.jobs.set_replicas(SO, 0)
        events.append("sigterm")
        worker.send_signal(signal.SIGTERM)
        patched_at = len(cluster.api.requests)

        def finish() -> None:
            def polled() -> bool:
                return any(
                    r.path.endswith("/proxy/v1/queues/reports") and r.status == 200
                    for r in cluster.api.requests[patched_at:]
                )

            wait_until(polled, timeout_s=30)
            apis.redis.set(GATE_KEY, "1")
            worker.popen.wait(timeout=60)
            events.append(f"exited {worker.popen.returncode}")
            cluster.api.delete("Pod", "jobs", pod)

        threading.Thread(target=finish, daemon=True).start()

    cluster.api.on_patch.append(on_patch)
    return events


def test_drain_waits_for_running_jobs_and_keeps_the_backlog(
    cluster: Cluster, clean_redis: Apis, reports_worker: Proc
) -> None:
    cluster.jobs.set_replicas(SO, 1)
    pod = cluster.jobs.add_pod(SO)
    cluster.jobs.keda_ready(SO, active=True)
    events = _play_keda(cluster, clean_redis, reports_worker, pod)
    clean_redis.redis.delete(GATE_KEY)
    running = clean_redis.enqueue("kubectl.gated", "reports")
    clean_redis.wait_state(running, "started")
    waiting = [clean_redis.enqueue("jobyard.noop", "reports") for _ in range(2)]

    result = cluster.run("drain", "reports", "--poll-interval", "0.2", "--timeout", "60")

    assert result.returncode == 0, result.stderr
    assert result.stdout.splitlines() == [
        "paused autoscaling of queue 'reports': ScaledObject jobyard-worker-reports annotated "
        "autoscaling.keda.sh/paused-replicas=0: KEDA scales deploy/jobyard-worker-reports to 0 "
        "and holds it there. Waiting jobs stay in Redis.",
        "drained queue 'reports': no worker pod, no job running; 2 job(s) wait in Redis. "
        "`kubectl jobyard resume reports` starts consuming again.",
    ]
    assert "waiting: 1 worker pod(s), 1 job(s) running" in result.stderr.splitlines()
    assert events == ["sigterm", "exited 0"]
    # The running job finished inside the grace period; the waiting ones are still queued.
    assert clean_redis.job(running)["state"] == "succeeded"
    assert clean_redis.job(running)["result"] == "gate opened"
    assert [clean_redis.job(j)["state"] for j in waiting] == ["queued", "queued"]
    patches = [(r.path, r.body) for r in cluster.api.requests if r.method == "PATCH"]
    assert patches == [
        (
            f"/apis/keda.sh/v1alpha1/namespaces/jobs/scaledobjects/{SO}",
            {
                "metadata": {
                    "annotations": {
                        "autoscaling.keda.sh/paused-replicas": "0",
                        "autoscaling.keda.sh/paused": None,
                    }
                }
            },
        )
    ]
    polled = {(r.method, r.path) for r in cluster.api.requests}
    assert ("GET", "/api/v1/namespaces/jobs/pods") in polled
    assert (
        "GET",
        "/api/v1/namespaces/jobs/services/jobyard-api:8000/proxy/v1/queues/reports",
    ) in polled
    pod_lists = [r for r in cluster.api.requests if r.path == "/api/v1/namespaces/jobs/pods"]
    assert pod_lists[0].query["labelSelector"] == [
        "app.kubernetes.io/name=jobyard,app.kubernetes.io/instance=jobyard,"
        "app.kubernetes.io/component=worker,jobyard.io/queue=reports"
    ]


def test_drain_times_out_with_exit_3_and_stays_paused(cluster: Cluster, clean_redis: Apis) -> None:
    cluster.jobs.add_pod("jobyard-worker-emails")
    result = cluster.run("drain", "emails", "--timeout", "0.5", "--poll-interval", "0.2")
    assert result.returncode == 3
    assert result.stderr.splitlines()[-1] == (
        "kubectl jobyard: queue 'emails' not drained after 0.5 s: 1 worker pod(s), 0 job(s) "
        "running; it stays paused at 0 workers"
    )
    so = cluster.jobs.scaled_object("jobyard-worker-emails")
    assert so["metadata"]["annotations"] == {"autoscaling.keda.sh/paused-replicas": "0"}


def test_drain_no_wait_json(cluster: Cluster, clean_redis: Apis) -> None:
    result = cluster.run("drain", "emails", "--no-wait", "-o", "json")
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout)["drained"] is None
    assert not any(r.path.endswith("/pods") for r in cluster.api.requests)


def test_drain_without_keda_needs_scale(cluster: Cluster, clean_redis: Apis) -> None:
    plain = install(cluster.api, {"keda": {"enabled": False}}, "plain", "plain")
    cluster.api.proxy_targets[("plain", "plain-jobyard-api")] = clean_redis.open_url
    refused = cluster.run("drain", "emails", "-n", "plain")
    assert refused.returncode == 2
    assert "`kubectl jobyard drain emails --scale`" in refused.stderr
    result = cluster.run("drain", "emails", "-n", "plain", "--scale", "-o", "json")
    assert result.returncode == 0, result.stderr
    summary = json.loads(result.stdout)
    assert summary == {
        "queue": "emails",
        "action": "paused",
        "via": "deployment",
        "scaled_object": None,
        "deployment": "plain-jobyard-worker-emails",
        "annotations": {"jobyard.io/replicas-before-pause": "1"},
        "replicas": 0,
        "drained": True,
        "worker_pods": 0,
        "in_progress": 0,
        "backlog": 0,
    }
    assert plain.deployment("plain-jobyard-worker-emails")["spec"]["replicas"] == 0
