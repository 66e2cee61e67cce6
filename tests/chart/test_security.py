"""Restricted Pod Security Standard, read-only root filesystem, no API token."""

from __future__ import annotations

from collections.abc import Callable

import pytest

from tests.chart.conftest import MATRIX
from tests.chart.rendering import Rendered, containers, load_values, pod_spec

Render = Callable[[str], Rendered]
WORKLOADS = ("Deployment", "StatefulSet", "Pod")


@pytest.mark.parametrize("values_name", MATRIX)
class TestRestrictedProfile:
    def test_every_pod_meets_the_restricted_standard(
        self, rendered: Render, values_name: str
    ) -> None:
        pods = [o for o in rendered(values_name).objects if o["kind"] in WORKLOADS]
        assert pods
        # Only deploy/dev-values.yaml relaxes it (Tilt's live_update writes into the container).
        read_only = (
            load_values(values_name)
            .get("containerSecurityContext", {})
            .get("readOnlyRootFilesystem", True)
        )
        assert read_only is (not values_name.startswith("deploy-dev"))
        for obj in pods:
            spec = pod_spec(obj)
            name = obj["metadata"]["name"]
            assert spec["securityContext"]["runAsNonRoot"] is True, name
            assert spec["securityContext"]["runAsUser"] == 10001, name
            assert spec["securityContext"]["seccompProfile"] == {"type": "RuntimeDefault"}, name
            assert "hostNetwork" not in spec and "hostPID" not in spec and "hostIPC" not in spec
            for c in containers(obj):
                sc = c["securityContext"]
                assert sc["allowPrivilegeEscalation"] is False, (name, c["name"])
                assert sc["capabilities"] == {"drop": ["ALL"]}, (name, c["name"])
                assert sc["runAsNonRoot"] is True and sc["privileged"] is False
                assert sc["seccompProfile"] == {"type": "RuntimeDefault"}
                assert sc["readOnlyRootFilesystem"] is read_only, (name, c["name"])
                assert "resources" in c and "memory" in c["resources"]["limits"], (name, c["name"])

    def test_no_kubernetes_api_token_is_mounted(self, rendered: Render, values_name: str) -> None:
        r = rendered(values_name)
        for obj in r.objects:
            if obj["kind"] in WORKLOADS:
                assert pod_spec(obj)["automountServiceAccountToken"] is False, obj["metadata"][
                    "name"
                ]
        for account in r.of_kind("ServiceAccount"):
            assert account["automountServiceAccountToken"] is False

    def test_writable_paths_are_emptydir_volumes(self, rendered: Render, values_name: str) -> None:
        r = rendered(values_name)
        for obj in r.objects:
            if (
                obj["kind"] not in WORKLOADS
                or obj["metadata"]["labels"]["app.kubernetes.io/component"] == "redis"
            ):
                continue
            volumes = {v["name"]: v for v in pod_spec(obj)["volumes"]}
            assert "emptyDir" in volumes["tmp"], obj["metadata"]["name"]
            for c in containers(obj):
                if c.get("volumeMounts"):
                    assert {"name": "tmp", "mountPath": "/tmp"} in c["volumeMounts"]
