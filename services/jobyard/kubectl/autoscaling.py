"""What autoscales a queue (KEDA ScaledObject, a plain HPA, or nothing), its state, and
the KEDA annotations that pause it.

KEDA (keda.sh/v1alpha1 ScaledObject annotations):
- `autoscaling.keda.sh/paused-replicas: "N"` scales the workload to N and stops
  autoscaling until removed (it wins over `paused`);
- `autoscaling.keda.sh/paused: "true"` stops autoscaling at the current replica count.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from jobyard.kubectl.errors import NotFoundError
from jobyard.kubectl.kube import Kube, Obj
from jobyard.kubectl.rbac import GET_SCALEDOBJECTS, LIST_HPAS, LIST_SCALEDOBJECTS
from jobyard.kubectl.release import CHART_SELECTOR, INSTANCE_LABEL, Release, name_of

KEDA_GROUP = "keda.sh"
KEDA_VERSION = "v1alpha1"
SCALEDOBJECTS = "scaledobjects"
PAUSED = "autoscaling.keda.sh/paused"
PAUSED_REPLICAS = "autoscaling.keda.sh/paused-replicas"
MERGE_PATCH = "application/merge-patch+json"
"""Custom resources take JSON merge patches (not strategic ones)."""


@dataclass
class Autoscaling:
    """How one queue's Deployment is scaled, as the objects show it now."""

    kind: str
    """`keda` (a ScaledObject), `hpa` (a plain HorizontalPodAutoscaler) or `none`."""
    state: str
    """keda: `paused`, `error`, `fallback`, `active`, `idle` or `unknown`; hpa: `hpa`;
    none: `fixed`."""
    scaled_object: str | None = None
    hpa: str | None = None
    ready: bool | None = None
    active: bool | None = None
    fallback: bool | None = None
    paused: bool = False
    paused_replicas: int | None = None
    min_replicas: int | None = None
    max_replicas: int | None = None
    hpa_desired_replicas: int | None = None
    errors: list[str] = field(default_factory=list)


def _condition(obj: Obj, kind: str) -> Obj | None:
    for condition in (obj.get("status") or {}).get("conditions") or []:
        if condition.get("type") == kind:
            return dict(condition)
    return None


def _is_true(condition: Obj | None) -> bool | None:
    if condition is None or condition.get("status") not in ("True", "False"):
        return None
    return bool(condition["status"] == "True")


def annotations_of(obj: Obj) -> dict[str, str]:
    return dict((obj.get("metadata") or {}).get("annotations") or {})


def paused_replicas(obj: Obj) -> int | None:
    """The `paused-replicas` annotation as a number (None: absent or not a number)."""
    value = annotations_of(obj).get(PAUSED_REPLICAS)
    try:
        return None if value is None else int(value)
    except ValueError:
        return None


def is_paused(obj: Obj) -> bool:
    annotations = annotations_of(obj)
    return PAUSED_REPLICAS in annotations or annotations.get(PAUSED, "").lower() == "true"


def keda_state(scaled_object: Obj, hpa: Obj | None) -> Autoscaling:
    """The state of a ScaledObject from its annotations and status conditions."""
    ready = _is_true(_condition(scaled_object, "Ready"))
    active = _is_true(_condition(scaled_object, "Active"))
    fallback = _is_true(_condition(scaled_object, "Fallback"))
    paused_condition = _is_true(_condition(scaled_object, "Paused"))
    paused = is_paused(scaled_object) or bool(paused_condition)
    errors = [
        str(c.get("message") or c.get("reason") or "")
        for c in [_condition(scaled_object, "Ready")]
        if c is not None and c.get("status") == "False"
    ]
    if paused:
        state = "paused"
    elif errors:
        state = "error"
    elif fallback:
        state = "fallback"
    elif active is not None:
        state = "active" if active else "idle"
    else:
        state = "unknown"
    spec = scaled_object.get("spec") or {}
    status = scaled_object.get("status") or {}
    return Autoscaling(
        kind="keda",
        state=state,
        scaled_object=name_of(scaled_object),
        hpa=str(status.get("hpaName") or (name_of(hpa) if hpa else "")) or None,
        ready=ready,
        active=active,
        fallback=fallback,
        paused=paused,
        paused_replicas=paused_replicas(scaled_object),
        min_replicas=int(spec.get("minReplicaCount", 0)),
        max_replicas=int(spec.get("maxReplicaCount", 100)),
        hpa_desired_replicas=_desired(hpa),
        errors=errors,
    )


def _desired(hpa: Obj | None) -> int | None:
    if hpa is None:
        return None
    value = (hpa.get("status") or {}).get("desiredReplicas")
    return None if value is None else int(value)


def hpa_state(hpa: Obj) -> Autoscaling:
    spec = hpa.get("spec") or {}
    return Autoscaling(
        kind="hpa",
        state="hpa",
        hpa=name_of(hpa),
        min_replicas=int(spec.get("minReplicas", 1)),
        max_replicas=int(spec["maxReplicas"]),
        hpa_desired_replicas=_desired(hpa),
    )


def by_target(hpas: list[Obj]) -> dict[str, Obj]:
    """HPAs by the name of the Deployment they scale."""
    found: dict[str, Obj] = {}
    for hpa in hpas:
        ref = (hpa.get("spec") or {}).get("scaleTargetRef") or {}
        if ref.get("kind") == "Deployment" and ref.get("name"):
            found[str(ref["name"])] = hpa
    return found


def list_scaled_objects(kube: Kube, release: Release) -> dict[str, Obj] | None:
    """The release's ScaledObjects by name; None when the cluster has no KEDA API."""
    try:
        listed = kube.read(
            LIST_SCALEDOBJECTS,
            kube.custom.list_namespaced_custom_object,
            KEDA_GROUP,
            KEDA_VERSION,
            kube.namespace,
            SCALEDOBJECTS,
            label_selector=f"{CHART_SELECTOR},{INSTANCE_LABEL}={release.name}",
        )
    except NotFoundError:
        return None
    return {name_of(o): o for o in listed.get("items") or []}


def list_hpas(kube: Kube) -> list[Obj]:
    listed = kube.read(
        LIST_HPAS,
        kube.autoscaling.list_namespaced_horizontal_pod_autoscaler,
        kube.namespace,
    )
    return list(listed.get("items") or [])


def get_scaled_object(kube: Kube, name: str) -> Obj | None:
    """The ScaledObject `name`, or None (none of that name, or no KEDA in the cluster)."""
    try:
        return kube.read(
            GET_SCALEDOBJECTS,
            kube.custom.get_namespaced_custom_object,
            KEDA_GROUP,
            KEDA_VERSION,
            kube.namespace,
            SCALEDOBJECTS,
            name,
            name=name,
        )
    except NotFoundError:
        return None


def pause_patch(replicas: int | None) -> dict[str, Any]:
    """Merge patch: `paused-replicas: N` (scale to N, hold), or with None `paused: true`
    (hold the current count). The other annotation is removed so only one is in force."""
    if replicas is None:
        annotations: dict[str, str | None] = {PAUSED: "true", PAUSED_REPLICAS: None}
    else:
        annotations = {PAUSED_REPLICAS: str(replicas), PAUSED: None}
    return {"metadata": {"annotations": annotations}}


def resume_patch() -> dict[str, Any]:
    """Merge patch removing both pause annotations (null deletes a key)."""
    return {"metadata": {"annotations": {PAUSED: None, PAUSED_REPLICAS: None}}}
