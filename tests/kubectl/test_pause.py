"""`pause`, `resume`: KEDA's pause annotations by JSON merge patch, and the `--scale`
fallback for queues without KEDA."""

from __future__ import annotations

import json

from tests.kubectl.cluster import install
from tests.kubectl.conftest import Apis, Cluster

SO_PATH = "/apis/keda.sh/v1alpha1/namespaces/jobs/scaledobjects/jobyard-worker-default"
MERGE = "application/merge-patch+json"


def _patches(cluster: Cluster) -> list[tuple[str, str | None, object]]:
    return [(r.path, r.content_type, r.body) for r in cluster.api.requests if r.method == "PATCH"]


def _annotations(cluster: Cluster) -> dict[str, str]:
    so = cluster.jobs.scaled_object("jobyard-worker-default")
    return dict(so["metadata"].get("annotations") or {})


def test_pause_holds_the_queue_at_zero_with_paused_replicas(cluster: Cluster) -> None:
    result = cluster.run("pause", "default")
    assert result.returncode == 0, result.stderr
    assert result.stdout == (
        "paused autoscaling of queue 'default': ScaledObject jobyard-worker-default annotated "
        "autoscaling.keda.sh/paused-replicas=0: KEDA scales deploy/jobyard-worker-default to 0 "
        "and holds it there. Waiting jobs stay in Redis.\n"
    )
    assert _patches(cluster) == [
        (
            SO_PATH,
            MERGE,
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
    assert _annotations(cluster) == {"autoscaling.keda.sh/paused-replicas": "0"}
    assert cluster.requests() == [
        (
            "GET",
            "/apis/apps/v1/namespaces/jobs/deployments",
            "labelSelector=app.kubernetes.io/name=jobyard",
        ),
        ("GET", SO_PATH, ""),
        ("PATCH", SO_PATH, ""),
    ]


def test_pause_with_replicas_and_keep_replicas(cluster: Cluster) -> None:
    result = cluster.run("pause", "default", "--replicas", "3", "-o", "json")
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout) == {
        "queue": "default",
        "action": "paused",
        "via": "keda",
        "scaled_object": "jobyard-worker-default",
        "deployment": "jobyard-worker-default",
        "annotations": {
            "autoscaling.keda.sh/paused-replicas": "3",
            "autoscaling.keda.sh/paused": None,
        },
        "replicas": 3,
    }
    assert _annotations(cluster) == {"autoscaling.keda.sh/paused-replicas": "3"}
    keep = cluster.run("pause", "default", "--keep-replicas")
    assert keep.returncode == 0, keep.stderr
    assert (
        "autoscaling.keda.sh/paused=true: KEDA keeps deploy/jobyard-worker-default at its "
        "current replicas" in keep.stdout
    )
    assert _patches(cluster)[-1] == (
        SO_PATH,
        MERGE,
        {
            "metadata": {
                "annotations": {
                    "autoscaling.keda.sh/paused": "true",
                    "autoscaling.keda.sh/paused-replicas": None,
                }
            }
        },
    )
    assert _annotations(cluster) == {"autoscaling.keda.sh/paused": "true"}
    both = cluster.run("pause", "default", "--keep-replicas", "--replicas", "2")
    assert both.returncode == 2
    assert "give --replicas N or --keep-replicas, not both" in both.stderr


def test_resume_removes_both_annotations_with_nulls(cluster: Cluster) -> None:
    assert cluster.run("pause", "default", "--replicas", "2").returncode == 0
    result = cluster.run("resume", "default")
    assert result.returncode == 0, result.stderr
    assert result.stdout == (
        "resumed autoscaling of queue 'default': removed autoscaling.keda.sh/paused and "
        "autoscaling.keda.sh/paused-replicas from ScaledObject jobyard-worker-default; KEDA "
        "scales deploy/jobyard-worker-default between 1 and 10 again\n"
    )
    assert _patches(cluster)[-1] == (
        SO_PATH,
        MERGE,
        {
            "metadata": {
                "annotations": {
                    "autoscaling.keda.sh/paused": None,
                    "autoscaling.keda.sh/paused-replicas": None,
                }
            }
        },
    )
    assert _annotations(cluster) == {}
    again = cluster.run("resume", "default")
    assert again.returncode == 0
    assert "queue 'default' is not paused" in again.stdout
    assert len(_patches(cluster)) == 2


def test_unknown_queue_lists_the_queues(cluster: Cluster) -> None:
    result = cluster.run("pause", "nope")
    assert result.returncode == 2
    assert result.stderr == (
        "kubectl jobyard: release 'jobyard' in namespace 'jobs' has no queue 'nope' (no "
        "Deployment labelled jobyard.io/queue=nope); its queues: default, emails, reports\n"
    )
    assert _patches(cluster) == []


def test_without_keda_pause_says_so_and_scale_patches_the_deployment(
    cluster: Cluster, apis: Apis
) -> None:
    plain = install(cluster.api, {"keda": {"enabled": False}}, "plain", "plain")
    plain.set_replicas("plain-jobyard-worker-emails", 3)
    refused = cluster.run("pause", "emails", "-n", "plain")
    assert refused.returncode == 2
    assert refused.stderr == (
        "kubectl jobyard: queue 'emails' is not autoscaled by KEDA (no ScaledObject "
        "'plain-jobyard-worker-emails'): there is no autoscaling to pause. To stop its workers "
        "anyway, scale the Deployment: `kubectl jobyard pause emails --scale` (`kubectl "
        "jobyard resume emails` scales it back)\n"
    )
    assert _patches(cluster) == []
    scaled = cluster.run("pause", "emails", "-n", "plain", "--scale")
    assert scaled.returncode == 0, scaled.stderr
    assert scaled.stdout == (
        "scaled deploy/plain-jobyard-worker-emails to 0 replicas (queue 'emails' has no KEDA); "
        "`kubectl jobyard resume emails` scales it back to 3. Waiting jobs stay in Redis.\n"
    )
    path = "/apis/apps/v1/namespaces/plain/deployments/plain-jobyard-worker-emails"
    assert _patches(cluster) == [
        (
            path,
            MERGE,
            {
                "metadata": {"annotations": {"jobyard.io/replicas-before-pause": "3"}},
                "spec": {"replicas": 0},
            },
        )
    ]
    # Pausing again keeps the first count.
    assert cluster.run("pause", "emails", "-n", "plain", "--scale").returncode == 0
    assert _patches(cluster)[-1][2] == {
        "metadata": {"annotations": {"jobyard.io/replicas-before-pause": "3"}},
        "spec": {"replicas": 0},
    }
    resumed = cluster.run("resume", "emails", "-n", "plain")
    assert resumed.returncode == 0, resumed.stderr
    assert (
        resumed.stdout
        == "scaled deploy/plain-jobyard-worker-emails back to 3 replicas (queue 'emails')\n"
    )
    assert _patches(cluster)[-1] == (
        path,
        MERGE,
        {
            "metadata": {"annotations": {"jobyard.io/replicas-before-pause": None}},
            "spec": {"replicas": 3},
        },
    )
    deployment = plain.deployment("plain-jobyard-worker-emails")
    assert deployment["spec"]["replicas"] == 3
    assert "jobyard.io/replicas-before-pause" not in (
        deployment["metadata"].get("annotations") or {}
    )
    nothing = cluster.run("resume", "emails", "-n", "plain")
    assert nothing.returncode == 2
    assert "was not paused with `kubectl jobyard pause emails --scale`: nothing to resume" in (
        nothing.stderr
    )


def test_scale_is_refused_for_a_keda_queue(cluster: Cluster) -> None:
    result = cluster.run("pause", "default", "--scale")
    assert result.returncode == 2
    assert "--scale is for queues without KEDA" in result.stderr
    assert _patches(cluster) == []
