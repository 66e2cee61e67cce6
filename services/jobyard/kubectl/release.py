"""Find a jobyard release in a namespace: its Deployments by the chart's labels."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from jobyard.kubectl.errors import ForbiddenError, ReleaseNotFoundError
from jobyard.kubectl.kube import Kube, Obj
from jobyard.kubectl.rbac import LIST_DEPLOYMENTS

NAME_LABEL = "app.kubernetes.io/name"
INSTANCE_LABEL = "app.kubernetes.io/instance"
COMPONENT_LABEL = "app.kubernetes.io/component"
QUEUE_LABEL = "jobyard.io/queue"
CHART_NAME = "jobyard"
CHART_SELECTOR = f"{NAME_LABEL}={CHART_NAME}"


@dataclass
class Release:
    """One Helm release of the chart, as its Deployments show it."""

    name: str
    namespace: str
    fullname: str
    """The prefix of the chart's object names (`<fullname>-api`, `<fullname>-worker-<q>`)."""
    api: Obj | None = None
    beat: Obj | None = None
    workers: dict[str, Obj] = field(default_factory=dict)
    """Worker Deployments by queue."""

    @property
    def api_name(self) -> str:
        return f"{self.fullname}-api"

    @property
    def beat_name(self) -> str:
        return f"{self.fullname}-beat"

    def worker_name(self, queue: str) -> str:
        return f"{self.fullname}-worker-{queue}"

    def selector(self, component: str, queue: str | None = None) -> str:
        """A label selector for the release's pods of one component (and queue)."""
        labels = [CHART_SELECTOR, f"{INSTANCE_LABEL}={self.name}", f"{COMPONENT_LABEL}={component}"]
        if queue is not None:
            labels.append(f"{QUEUE_LABEL}={queue}")
        return ",".join(labels)

    def worker(self, queue: str) -> Obj:
        """The queue's worker Deployment; an error listing the queues when there is none."""
        if queue not in self.workers:
            known = ", ".join(self.workers) or "none"
            raise ReleaseNotFoundError(
                f"release {self.name!r} in namespace {self.namespace!r} has no queue "
                f"{queue!r} (no Deployment labelled {QUEUE_LABEL}={queue}); its queues: {known}"
            )
        return self.workers[queue]


def labels_of(obj: Obj) -> dict[str, str]:
    return dict(obj.get("metadata", {}).get("labels") or {})


def name_of(obj: Obj) -> str:
    return str(obj["metadata"]["name"])


def _group(deployments: list[Obj]) -> dict[str, list[Obj]]:
    releases: dict[str, list[Obj]] = {}
    for deployment in deployments:
        instance = labels_of(deployment).get(INSTANCE_LABEL)
        if instance:
            releases.setdefault(instance, []).append(deployment)
    return releases


def _build(name: str, namespace: str, deployments: list[Obj]) -> Release:
    release = Release(name=name, namespace=namespace, fullname="")
    fullnames: list[str] = []
    for deployment in deployments:
        labels = labels_of(deployment)
        component = labels.get(COMPONENT_LABEL)
        dname = name_of(deployment)
        if component == "api":
            release.api = deployment
            fullnames.append(dname.removesuffix("-api"))
        elif component == "beat":
            release.beat = deployment
            fullnames.append(dname.removesuffix("-beat"))
        elif component == "worker" and labels.get(QUEUE_LABEL):
            queue = labels[QUEUE_LABEL]
            release.workers[queue] = deployment
            fullnames.append(dname.removesuffix(f"-worker-{queue}"))
    release.fullname = fullnames[0] if fullnames else name
    return release


def find_release(kube: Kube, name: str | None) -> Release:
    """The release `name` in the namespace (None: the only one there)."""
    listed = kube.read(
        LIST_DEPLOYMENTS,
        kube.apps.list_namespaced_deployment,
        kube.namespace,
        label_selector=CHART_SELECTOR,
    )
    found = _group(list(listed.get("items") or []))
    if name is not None and name in found:
        return _build(name, kube.namespace, found[name])
    if name is None and len(found) == 1:
        only = next(iter(found))
        return _build(only, kube.namespace, found[only])
    if name is None and found:
        raise ReleaseNotFoundError(
            f"namespace {kube.namespace!r} has several jobyard releases: "
            f"{', '.join(sorted(found))}; pass --release NAME"
        )
    wanted = f"no jobyard release {name!r}" if name else "no jobyard release"
    message = f"{wanted} in namespace {kube.namespace!r} (Deployments labelled {CHART_SELECTOR})"
    if found:
        raise ReleaseNotFoundError(f"{message}; releases there: {', '.join(sorted(found))}")
    raise ReleaseNotFoundError(f"{message}; {elsewhere(kube)}")


def elsewhere(kube: Kube) -> str:
    """Where else releases exist (every namespace), for the not-found message."""
    try:
        listed: dict[str, Any] = kube.read(
            LIST_DEPLOYMENTS,
            kube.apps.list_deployment_for_all_namespaces,
            namespace="",
            label_selector=CHART_SELECTOR,
        )
    except ForbiddenError:
        return "you may not list Deployments in other namespaces to look for releases there"
    where: set[str] = set()
    for deployment in listed.get("items") or []:
        instance = labels_of(deployment).get(INSTANCE_LABEL)
        if instance:
            where.add(f"{instance} (-n {deployment['metadata']['namespace']})")
    if not where:
        return "no jobyard release in any namespace"
    return f"releases in other namespaces: {', '.join(sorted(where))}"
