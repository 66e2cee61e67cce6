"""`restart beat|api|QUEUE`: the pod-template annotation kubectl's rollout restart sets,
by strategic merge patch; beat only when its Deployment cannot run two beats at once."""

from __future__ import annotations

import json
from datetime import datetime

from tests.kubectl.conftest import Cluster

DEPLOYMENTS = "/apis/apps/v1/namespaces/jobs/deployments"
STRATEGIC = "application/strategic-merge-patch+json"


def _restarted_at(cluster: Cluster, name: str) -> str:
    patches = [r for r in cluster.api.requests if r.method == "PATCH"]
    assert [(r.path, r.content_type) for r in patches] == [(f"{DEPLOYMENTS}/{name}", STRATEGIC)]
    body = patches[0].body
    assert isinstance(body, dict)
    annotations = body["spec"]["template"]["metadata"]["annotations"]
    assert list(annotations) == ["kubectl.kubernetes.io/restartedAt"]
    assert body == {"spec": {"template": {"metadata": {"annotations": annotations}}}}
    stamp = str(annotations["kubectl.kubernetes.io/restartedAt"])
    age_s = datetime.now().astimezone().timestamp() - datetime.fromisoformat(stamp).timestamp()
    assert 0 <= age_s < 60, stamp
    template = cluster.jobs.deployment(name)["spec"]["template"]["metadata"]["annotations"]
    assert template["kubectl.kubernetes.io/restartedAt"] == stamp
    return stamp


def test_restart_beat_with_recreate(cluster: Cluster) -> None:
    result = cluster.run("restart", "beat")
    assert result.returncode == 0, result.stderr
    stamp = _restarted_at(cluster, "jobyard-beat")
    assert result.stdout == (
        f"deploy/jobyard-beat restarted (kubectl.kubernetes.io/restartedAt={stamp}); follow with "
        "`kubectl -n jobs rollout status deploy/jobyard-beat`\n"
    )
    # The chart's other pod-template annotations (config checksums) are kept.
    annotations = cluster.jobs.deployment("jobyard-beat")["spec"]["template"]["metadata"][
        "annotations"
    ]
    assert any(key.startswith("checksum/") for key in annotations)


def test_restart_beat_refuses_a_rolling_update(cluster: Cluster) -> None:
    beat = cluster.jobs.deployment("jobyard-beat")
    beat["spec"]["strategy"] = {
        "type": "RollingUpdate",
        "rollingUpdate": {"maxSurge": "25%", "maxUnavailable": "25%"},
    }
    refused = cluster.run("restart", "beat")
    assert refused.returncode == 2
    assert refused.stderr == (
        "kubectl jobyard: refusing to restart beat, deploy/jobyard-beat: its strategy is "
        "RollingUpdate, not Recreate: the new beat pod would start before the old one stops. "
        "Two beats overlap safely only while the Redis lease holds; fix the Deployment (the "
        "chart sets Recreate and 1 replica) or pass --force\n"
    )
    assert not any(r.method == "PATCH" for r in cluster.api.requests)
    forced = cluster.run("restart", "beat", "--force")
    assert forced.returncode == 0, forced.stderr
    assert forced.stderr.startswith(
        "kubectl jobyard: warning: deploy/jobyard-beat: its strategy is RollingUpdate"
    )
    _restarted_at(cluster, "jobyard-beat")


def test_restart_api_and_a_queue(cluster: Cluster) -> None:
    result = cluster.run("restart", "api", "-o", "json")
    assert result.returncode == 0, result.stderr
    stamp = _restarted_at(cluster, "jobyard-api")
    assert json.loads(result.stdout) == {
        "deployment": "jobyard-api",
        "component": "api",
        "restarted_at": stamp,
        "replicas": 2,
    }
    cluster.api.requests.clear()
    cluster.jobs.set_replicas("jobyard-worker-emails", 0)
    queue = cluster.run("restart", "emails")
    assert queue.returncode == 0, queue.stderr
    _restarted_at(cluster, "jobyard-worker-emails")
    assert "it has 0 replicas now (paused or scaled to zero): nothing to replace" in queue.stdout
