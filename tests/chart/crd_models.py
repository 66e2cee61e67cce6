"""Validate KEDA and Prometheus Operator objects against their CRD models, strictly.

The models (cloudcoil-models-keda, cloudcoil-models-prometheus-operator, generated from
the projects' CRDs) accept unknown fields by default; `validate_crd_object` rejects them
by comparing what the model kept with what it was given.
"""

from __future__ import annotations

from typing import Any

import pydantic
from cloudcoil.models.keda import v1alpha1 as keda
from cloudcoil.models.prometheus_operator import v1 as monitoring

MODELS: dict[tuple[str, str], type[pydantic.BaseModel]] = {
    ("keda.sh/v1alpha1", "ScaledObject"): keda.ScaledObject,
    ("keda.sh/v1alpha1", "TriggerAuthentication"): keda.TriggerAuthentication,
    ("monitoring.coreos.com/v1", "ServiceMonitor"): monitoring.ServiceMonitor,
    ("monitoring.coreos.com/v1", "PodMonitor"): monitoring.PodMonitor,
    ("monitoring.coreos.com/v1", "PrometheusRule"): monitoring.PrometheusRule,
}


def is_crd_object(obj: dict[str, Any]) -> bool:
    return (obj["apiVersion"], obj["kind"]) in MODELS


def _unknown_paths(given: Any, kept: Any, path: str) -> list[str]:
    if isinstance(given, dict):
        if not isinstance(kept, dict):
            return [path or "<root>"]
        out: list[str] = []
        for key, value in given.items():
            where = f"{path}.{key}" if path else str(key)
            if key not in kept:
                out.append(where)
            else:
                out.extend(_unknown_paths(value, kept[key], where))
        return out
    if isinstance(given, list) and isinstance(kept, list):
        out = []
        for i, (g, k) in enumerate(zip(given, kept, strict=False)):
            out.extend(_unknown_paths(g, k, f"{path}[{i}]"))
        return out
    return []


def validate_crd_object(obj: dict[str, Any]) -> None:
    """Raise AssertionError naming each unknown field; pydantic.ValidationError on bad types."""
    model = MODELS[(obj["apiVersion"], obj["kind"])]
    parsed = model.model_validate(obj)
    kept = parsed.model_dump(mode="json", by_alias=True, exclude_unset=True)
    unknown = _unknown_paths(obj, kept, "")
    assert not unknown, f"{obj['kind']} {obj['metadata']['name']}: unknown fields {unknown}"
