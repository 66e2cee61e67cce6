"""Every rendered object of every values set is valid for Kubernetes, KEDA and the
Prometheus Operator, `helm lint` passes, and labels come from one helper."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import helm_python as helm
import kubernetes_validate
import pydantic
import pytest

from tests.chart.conftest import MATRIX
from tests.chart.crd_models import is_crd_object, validate_crd_object
from tests.chart.rendering import RELEASE, Rendered, load_values

# The chart's kubeVersion floor, a mid version, and the newest schemas available.
KUBERNETES_VERSIONS = ["1.29.0", "1.33.0", "1.37.0"]


@pytest.mark.parametrize("values_name", MATRIX)
class TestSchemas:
    @pytest.mark.parametrize("version", KUBERNETES_VERSIONS)
    def test_every_builtin_object_validates_strictly(
        self, rendered: Callable[[str], Rendered], values_name: str, version: str
    ) -> None:
        objects = [o for o in rendered(values_name).objects if not is_crd_object(o)]
        assert objects
        errors = []
        for obj in objects:
            try:
                kubernetes_validate.validate(obj, version, strict=True)
            except kubernetes_validate.ValidationError as exc:
                errors.append(f"{obj['kind']}/{obj['metadata']['name']}: {exc.message}")
        assert errors == []

    def test_every_crd_object_validates_against_its_crd(
        self, rendered: Callable[[str], Rendered], values_name: str
    ) -> None:
        for obj in rendered(values_name).objects:
            if is_crd_object(obj):
                validate_crd_object(obj)

    def test_helm_lint_passes(self, chart_dir: Path, values_name: str) -> None:
        report = helm.lint(
            chart_dir,
            load_values(values_name),
            strict=True,
            namespace="jobs",
            kube_version="v1.29.0",
        )
        problems = [m for m in report["messages"] if m["severity"] >= 2]
        assert problems == [] and report["errors"] == []


class TestCrdValidatorIsStrict:
    """The CRD check itself must reject what the CRDs reject."""

    def test_unknown_field_is_rejected(self, rendered: Callable[[str], Rendered]) -> None:
        scaled = dict(rendered("defaults").of_kind("ScaledObject")[0])
        bad = {**scaled, "spec": {**scaled["spec"], "listLength": "5"}}
        with pytest.raises(AssertionError, match=r"unknown fields \['spec.listLength'\]"):
            validate_crd_object(bad)

    def test_wrong_type_is_rejected(self, rendered: Callable[[str], Rendered]) -> None:
        scaled = dict(rendered("defaults").of_kind("ScaledObject")[0])
        bad = {**scaled, "spec": {**scaled["spec"], "minReplicaCount": "many"}}
        with pytest.raises(pydantic.ValidationError):
            validate_crd_object(bad)

    def test_kubernetes_validation_rejects_unknown_fields(
        self, rendered: Callable[[str], Rendered]
    ) -> None:
        deployment = rendered("defaults").get("Deployment", f"{RELEASE}-api")
        bad = {**deployment, "spec": {**deployment["spec"], "replica": 2}}
        with pytest.raises(kubernetes_validate.ValidationError):
            kubernetes_validate.validate(bad, "1.33.0", strict=True)


@pytest.mark.parametrize("values_name", MATRIX)
class TestLabels:
    def test_every_object_has_the_recommended_labels(
        self, rendered: Callable[[str], Rendered], values_name: str
    ) -> None:
        for obj in rendered(values_name).objects:
            labels = obj["metadata"].get("labels", {})
            assert labels.get("app.kubernetes.io/name") == "jobyard", obj["metadata"]["name"]
            assert labels.get("app.kubernetes.io/instance") == RELEASE
            assert labels.get("app.kubernetes.io/managed-by") == "Helm"
            assert labels.get("app.kubernetes.io/part-of") == "jobyard"
            assert labels.get("app.kubernetes.io/version") == "0.1.0"
            assert labels.get("helm.sh/chart") == "jobyard-0.1.0"
            assert labels.get("app.kubernetes.io/component")

    def test_worker_objects_carry_their_queue(
        self, rendered: Callable[[str], Rendered], values_name: str
    ) -> None:
        queues = {q["name"] for q in load_values(values_name).get("queues", [])} or {
            "default",
            "emails",
            "reports",
        }
        per_queue = [
            o
            for o in rendered(values_name).objects
            if o["metadata"]["labels"]["app.kubernetes.io/component"] == "worker"
            and o["kind"] not in ("TriggerAuthentication", "NetworkPolicy", "PodMonitor")
        ]
        assert per_queue
        for obj in per_queue:
            queue = obj["metadata"]["labels"]["jobyard.io/queue"]
            assert queue in queues
            assert obj["metadata"]["name"] == f"{RELEASE}-worker-{queue}"
            if obj["kind"] == "Deployment":
                template_labels = obj["spec"]["template"]["metadata"]["labels"]
                assert template_labels["jobyard.io/queue"] == queue
                assert obj["spec"]["selector"]["matchLabels"]["jobyard.io/queue"] == queue
