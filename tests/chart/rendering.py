"""Render the chart with the real Helm engine and index what comes out.

Helm is the Go SDK bundled in the `helm-python-sdk` wheel (no `helm` binary here). Offline
rendering reports only built-in APIs in `.Capabilities`, so values sets that want KEDA or
Prometheus Operator objects assert the CRDs with `keda.crdInstalled` /
`monitoring.crdInstalled`, as a GitOps tool would.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import helm_python as helm
import yaml

ROOT = Path(__file__).resolve().parents[2]
CHART_DIR = ROOT / "charts" / "jobyard"
VALUES_DIR = Path(__file__).resolve().parent / "values"
RELEASE = "jobyard"
NAMESPACE = "jobs"

Obj = dict[str, Any]


@dataclass
class Rendered:
    """The objects one render produced, plus NOTES.txt."""

    objects: list[Obj]
    notes: str
    files: dict[str, str] = field(default_factory=dict)

    def of_kind(self, kind: str) -> list[Obj]:
        return [o for o in self.objects if o["kind"] == kind]

    def get(self, kind: str, name: str) -> Obj:
        found = [o for o in self.of_kind(kind) if o["metadata"]["name"] == name]
        assert len(found) == 1, f"expected one {kind} {name}, found {len(found)}: {self.names()}"
        return found[0]

    def has(self, kind: str, name: str) -> bool:
        return any(o["metadata"]["name"] == name for o in self.of_kind(kind))

    def names(self) -> list[str]:
        return sorted(f"{o['kind']}/{o['metadata']['name']}" for o in self.objects)

    def workers(self) -> dict[str, Obj]:
        """Worker Deployments by queue label."""
        return {
            o["metadata"]["labels"]["jobyard.io/queue"]: o
            for o in self.of_kind("Deployment")
            if o["metadata"]["labels"]["app.kubernetes.io/component"] == "worker"
        }

    def scaled_objects(self) -> dict[str, Obj]:
        return {
            o["metadata"]["labels"]["jobyard.io/queue"]: o for o in self.of_kind("ScaledObject")
        }

    def config_text(self) -> str:
        return str(self.get("ConfigMap", f"{RELEASE}-config")["data"]["jobyard.yaml"])

    def secret_data(self) -> dict[str, str]:
        return dict(self.get("Secret", RELEASE)["stringData"])


# Values sets made of several files (like `helm -f a.yaml -f b.yaml`): the deploy/ files.
COMPOSED = {
    "deploy-dev": [ROOT / "deploy" / "dev-values.yaml"],
    "deploy-dev-monitoring": [
        ROOT / "deploy" / "dev-values.yaml",
        ROOT / "deploy" / "dev-monitoring-values.yaml",
    ],
    "deploy-prod-example": [
        ROOT / "deploy" / "prod-values.example.yaml",
        VALUES_DIR / "offline-crds.yaml",
    ],
}


def load_values(name: str) -> dict[str, Any]:
    """A values set: a file of tests/chart/values/ (`name` without .yaml) or COMPOSED."""
    paths = COMPOSED.get(name, [VALUES_DIR / f"{name}.yaml"])
    merged: dict[str, Any] = {}
    for path in paths:
        merged = deep_merge(merged, yaml.safe_load(path.read_text(encoding="utf-8")) or {})
    return merged


def _documents(text: str) -> Iterator[Obj]:
    for doc in yaml.safe_load_all(text):
        if doc:
            yield doc


def render(chart_dir: Path, values: dict[str, Any], *, namespace: str = NAMESPACE) -> Rendered:
    """Render like `helm template jobyard <chart> -n <namespace> -f values`."""
    with helm.Chart.load(chart_dir) as chart:
        files = chart.render(values, name=RELEASE, namespace=namespace, is_install=True)
    objects: list[Obj] = []
    notes = ""
    for path, text in sorted(files.items()):
        if path.endswith("NOTES.txt"):
            notes = text
        elif path.endswith(".yaml"):
            objects.extend(_documents(text))
    return Rendered(objects=objects, notes=notes, files=files)


def render_error(chart_dir: Path, values: dict[str, Any]) -> str:
    """The message of a render that must fail (AssertionError when it succeeds)."""
    try:
        render(chart_dir, values)
    except helm.HelmError as exc:
        return str(exc)
    raise AssertionError(f"render succeeded with values {values}")


def pod_spec(obj: Obj) -> Obj:
    """The pod spec of a workload or a Pod."""
    if obj["kind"] == "Pod":
        return dict(obj["spec"])
    return dict(obj["spec"]["template"]["spec"])


def containers(obj: Obj) -> list[Obj]:
    spec = pod_spec(obj)
    return [*spec.get("initContainers", []), *spec["containers"]]


def env_of(container: Obj) -> dict[str, Obj]:
    """A container's env entries by name (value or valueFrom)."""
    return {e["name"]: e for e in container.get("env", [])}


def deep_merge(base: dict[str, Any], override: dict[str, Any]) -> dict[str, Any]:
    out = dict(base)
    for key, value in override.items():
        if isinstance(value, dict) and isinstance(out.get(key), dict):
            out[key] = deep_merge(out[key], value)
        else:
            out[key] = value
    return out
