"""A jobyard release "installed" in the fake API server from a real Helm render, with the
status fields the cluster would add (ready replicas, KEDA conditions, KEDA's HPA, pods)."""

from __future__ import annotations

import hashlib
import time
from pathlib import Path
from typing import Any

import helm_python as helm
import yaml

from tests.chart.rendering import CHART_DIR, deep_merge
from tests.kubectl.fake_apiserver import PLURALS, FakeApiServer, Grants, LogSource, Obj

KEDA_VERSION = "2.16.1"
BASE_VALUES: dict[str, Any] = {
    "keda": {"crdInstalled": True},
    "kubectlPlugin": {"rbac": {"create": True}},
}


def render(values: dict[str, Any], release: str, namespace: str) -> list[Obj]:
    """`helm template RELEASE charts/jobyard -n NAMESPACE` with `values` over BASE_VALUES."""
    with helm.Chart.load(CHART_DIR) as chart:
        files = chart.render(
            deep_merge(BASE_VALUES, values), name=release, namespace=namespace, is_install=True
        )
    objects: list[Obj] = []
    for path, text in sorted(files.items()):
        if path.endswith(".yaml"):
            objects.extend(doc for doc in yaml.safe_load_all(text) if doc)
    return objects


def _now() -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())


def _hash(text: str, n: int) -> str:
    return hashlib.sha256(text.encode()).hexdigest()[:n]


class Installed:
    """One release in the fake cluster, and the handles a test moves it with."""

    def __init__(
        self, api: FakeApiServer, objects: list[Obj], release: str, namespace: str
    ) -> None:
        self.api = api
        self.objects = objects
        self.release = release
        self.namespace = namespace
        self.pod_count = 0

    def role_rules(self, role: str) -> list[Obj]:
        """The rules of the chart's `<fullname>-kubectl-<role>` Role."""
        for obj in self.objects:
            if obj["kind"] in ("Role", "ClusterRole") and obj["metadata"]["name"].endswith(
                f"-kubectl-{role}"
            ):
                return list(obj["rules"])
        raise AssertionError(f"no kubectl-{role} role in the render")

    def grants(self, role: str) -> Grants:
        return Grants(namespaced={self.namespace: self.role_rules(role)})

    def deployment(self, name: str) -> Obj:
        return self.api.get("Deployment", self.namespace, name)

    def scaled_object(self, name: str) -> Obj:
        return self.api.get("ScaledObject", self.namespace, name)

    def set_replicas(self, name: str, desired: int, ready: int | None = None) -> None:
        """What the Deployment controller reports; worker pods follow."""
        deployment = self.deployment(name)
        ready = desired if ready is None else ready
        deployment["spec"]["replicas"] = desired
        deployment["status"] = {
            "observedGeneration": deployment["metadata"].get("generation", 1),
            "replicas": desired,
            "updatedReplicas": desired,
            "readyReplicas": ready,
            "availableReplicas": ready,
            **({"unavailableReplicas": desired - ready} if desired > ready else {}),
            "conditions": [
                {
                    "type": "Available",
                    "status": "True" if ready else "False",
                    "reason": "MinimumReplicasAvailable",
                    "message": "Deployment has minimum availability.",
                    "lastUpdateTime": _now(),
                    "lastTransitionTime": _now(),
                },
            ],
        }
        if ready == 0:
            deployment["status"].pop("readyReplicas")
            deployment["status"].pop("availableReplicas")

    def add_pod(
        self, deployment_name: str, *, running: bool = True, lines: list[str] | None = None
    ) -> str:
        """A pod of the Deployment, with the labels its template gives it."""
        deployment = self.deployment(deployment_name)
        template = deployment["spec"]["template"]
        self.pod_count += 1
        pod_hash = _hash(deployment_name, 10)
        name = f"{deployment_name}-{pod_hash}-{_hash(str(self.pod_count), 5)}"
        container = template["spec"]["containers"][0]["name"]
        state = (
            {"running": {"startedAt": _now()}}
            if running
            else {"waiting": {"reason": "ContainerCreating"}}
        )
        pod = {
            "apiVersion": "v1",
            "kind": "Pod",
            "metadata": {
                "name": name,
                "generateName": f"{deployment_name}-{pod_hash}-",
                "labels": {**template["metadata"]["labels"], "pod-template-hash": pod_hash},
                "ownerReferences": [
                    {
                        "apiVersion": "apps/v1",
                        "kind": "ReplicaSet",
                        "name": f"{deployment_name}-{pod_hash}",
                        "uid": "rs-uid",
                        "controller": True,
                        "blockOwnerDeletion": True,
                    }
                ],
            },
            "spec": {
                "containers": [
                    {"name": container, "image": template["spec"]["containers"][0]["image"]}
                ],
                "nodeName": "node-1",
                "restartPolicy": "Always",
            },
            "status": {
                "phase": "Running" if running else "Pending",
                "podIP": f"10.244.0.{self.pod_count + 10}",
                "startTime": _now(),
                "containerStatuses": [
                    {
                        "name": container,
                        "ready": running,
                        "restartCount": 0,
                        "state": state,
                        "image": "jobyard",
                        "imageID": "",
                        "started": running,
                    }
                ],
            },
        }
        self.api.put(pod, self.namespace)
        self.api.logs[(self.namespace, name)] = LogSource(lines or [])
        return name

    def keda_ready(
        self,
        name: str,
        *,
        active: bool = False,
        paused: bool = False,
        fallback: bool = False,
        error: str | None = None,
    ) -> None:
        """Status conditions as KEDA writes them, and KEDA's HPA for the ScaledObject."""
        so = self.scaled_object(name)
        spec = so["spec"]
        if error:
            ready = {
                "type": "Ready",
                "status": "False",
                "reason": "ScaledObjectCheckFailed",
                "message": error,
            }
        else:
            ready = {
                "type": "Ready",
                "status": "True",
                "reason": "ScaledObjectReady",
                "message": "ScaledObject is defined correctly and is ready for scaling",
            }
        so["status"] = {
            "scaleTargetKind": "apps/v1.Deployment",
            "scaleTargetGVKR": {
                "group": "apps",
                "version": "v1",
                "kind": "Deployment",
                "resource": "deployments",
            },
            "originalReplicaCount": 1,
            "externalMetricNames": [
                f"s{i}-redis-{t['name']}" for i, t in enumerate(spec["triggers"])
            ],
            "hpaName": f"keda-hpa-{name}",
            "conditions": [
                {**ready, "lastTransitionTime": _now()},
                {
                    "type": "Active",
                    "status": "True" if active else "False",
                    "reason": "ScalerActive" if active else "ScalerNotActive",
                    "message": "Scaling is performed because triggers are active"
                    if active
                    else "Scaling is not performed because triggers are not active",
                    "lastTransitionTime": _now(),
                },
                {
                    "type": "Fallback",
                    "status": "True" if fallback else "False",
                    "reason": "FallbackExists" if fallback else "NoFallbackFound",
                    "message": "At least one trigger is falling back on this scaled object"
                    if fallback
                    else "No fallbacks are active on this scaled object",
                    "lastTransitionTime": _now(),
                },
                {
                    "type": "Paused",
                    "status": "True" if paused else "False",
                    "reason": "ScaledObjectPaused" if paused else "ScaledObjectUnpaused",
                    "message": "ScaledObject is paused"
                    if paused
                    else "pause annotation removed for ScaledObject",
                    "lastTransitionTime": _now(),
                },
            ],
        }
        deployment = self.deployment(spec["scaleTargetRef"]["name"])
        current = int(deployment["spec"]["replicas"])
        hpa = {
            "apiVersion": "autoscaling/v2",
            "kind": "HorizontalPodAutoscaler",
            "metadata": {
                "name": f"keda-hpa-{name}",
                "labels": {
                    "app.kubernetes.io/managed-by": "keda-operator",
                    "app.kubernetes.io/name": f"keda-hpa-{name}",
                    "app.kubernetes.io/part-of": name,
                    "app.kubernetes.io/version": KEDA_VERSION,
                    "scaledobject.keda.sh/name": name,
                },
                "ownerReferences": [
                    {
                        "apiVersion": "keda.sh/v1alpha1",
                        "kind": "ScaledObject",
                        "name": name,
                        "uid": so["metadata"]["uid"],
                        "controller": True,
                        "blockOwnerDeletion": True,
                    }
                ],
            },
            "spec": {
                "scaleTargetRef": {
                    "apiVersion": "apps/v1",
                    "kind": "Deployment",
                    "name": spec["scaleTargetRef"]["name"],
                },
                "minReplicas": max(1, int(spec.get("minReplicaCount", 0))),
                "maxReplicas": int(spec["maxReplicaCount"]),
                "metrics": [
                    {
                        "type": "External",
                        "external": {
                            "metric": {
                                "name": "s0-redis-jobyard",
                                "selector": {"matchLabels": {"scaledobject.keda.sh/name": name}},
                            },
                            "target": {
                                "type": "AverageValue",
                                "averageValue": spec["advanced"]["scalingModifiers"]["target"],
                            },
                        },
                    }
                ],
            },
            "status": {
                "currentReplicas": current,
                "desiredReplicas": current,
                "conditions": [
                    {
                        "type": "AbleToScale",
                        "status": "True",
                        "reason": "ReadyForNewScale",
                        "message": "recommended size matches current size",
                        "lastTransitionTime": _now(),
                    },
                    {
                        "type": "ScalingActive",
                        "status": "True",
                        "reason": "ValidMetricFound",
                        "message": "the HPA was able to successfully calculate a replica "
                        "count from external metric s0-redis-jobyard",
                        "lastTransitionTime": _now(),
                    },
                ],
            },
        }
        self.api.put(hpa, self.namespace)


def install(api: FakeApiServer, values: dict[str, Any], release: str, namespace: str) -> Installed:
    """Put every object of the render the plugin can read into the fake API server."""
    objects = render(values, release, namespace)
    for obj in objects:
        hook = (obj.get("metadata", {}).get("annotations") or {}).get("helm.sh/hook")
        if obj["kind"] in PLURALS and not hook:
            api.put(obj, namespace)
    return Installed(api, objects, release, namespace)


def write_kubeconfig(path: Path, server: str, users: dict[str, str], namespace: str) -> Path:
    """A kubeconfig with one context per user (context name = user name), first current."""
    config = {
        "apiVersion": "v1",
        "kind": "Config",
        "clusters": [{"name": "fake", "cluster": {"server": server}}],
        "users": [{"name": name, "user": {"token": token}} for name, token in users.items()],
        "contexts": [
            {"name": name, "context": {"cluster": "fake", "user": name, "namespace": namespace}}
            for name in users
        ],
        "current-context": next(iter(users)),
    }
    path.write_text(yaml.safe_dump(config), encoding="utf-8")
    return path
