"""Where the plugin connects: kubeconfig context namespace, in-cluster service account."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml
from kubernetes.config import incluster_config

from jobyard.kubectl import kube
from jobyard.kubectl.kube import Target, connect, context_namespace


def _kubeconfig(path: Path) -> Path:
    path.write_text(
        yaml.safe_dump(
            {
                "apiVersion": "v1",
                "kind": "Config",
                "clusters": [{"name": "c", "cluster": {"server": "https://k8s.example.com:6443"}}],
                "users": [{"name": "u", "user": {"token": "user-token"}}],
                "contexts": [
                    {
                        "name": "with-ns",
                        "context": {"cluster": "c", "user": "u", "namespace": "team-a"},
                    },
                    {"name": "without-ns", "context": {"cluster": "c", "user": "u"}},
                ],
                "current-context": "with-ns",
            }
        )
    )
    return path


def test_namespace_from_the_context_or_the_flag(tmp_path: Path) -> None:
    config = str(_kubeconfig(tmp_path / "config"))
    assert context_namespace(Target(kubeconfig=config)) == "team-a"
    assert context_namespace(Target(kubeconfig=config, context="without-ns")) is None
    assert connect(Target(kubeconfig=config)).namespace == "team-a"
    assert connect(Target(kubeconfig=config, context="without-ns")).namespace == "default"
    explicit = connect(Target(kubeconfig=config, namespace="jobs"))
    assert explicit.namespace == "jobs"
    assert explicit.server == "https://k8s.example.com:6443"
    assert explicit.api_client.configuration.api_key["BearerToken"] == "Bearer user-token"


def test_in_a_pod_without_kubeconfig_the_service_account_is_used(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    sa = tmp_path / "serviceaccount"
    sa.mkdir()
    (sa / "token").write_text("sa-token")
    (sa / "ca.crt").write_text("not used before a request")
    (sa / "namespace").write_text("jobs-prod\n")
    monkeypatch.setattr(incluster_config, "SERVICE_TOKEN_FILENAME", str(sa / "token"))
    monkeypatch.setattr(incluster_config, "SERVICE_CERT_FILENAME", str(sa / "ca.crt"))
    monkeypatch.setattr(kube, "SERVICE_ACCOUNT_DIR", sa)
    monkeypatch.setenv("HOME", str(tmp_path))
    monkeypatch.delenv("KUBECONFIG", raising=False)
    monkeypatch.setenv("KUBERNETES_SERVICE_HOST", "10.96.0.1")
    monkeypatch.setenv("KUBERNETES_SERVICE_PORT", "443")
    connected = connect(Target())
    assert connected.namespace == "jobs-prod"
    assert connected.server == "https://10.96.0.1:443"
    assert (
        connected.api_client.configuration.api_key["BearerToken"] == "bearer sa-token"
    )  # the loader writes it lower-case
    # A kubeconfig wins over the pod's service account, as with kubectl.
    (tmp_path / ".kube").mkdir()
    _kubeconfig(tmp_path / ".kube" / "config")
    assert connect(Target()).server == "https://k8s.example.com:6443"
    (tmp_path / ".kube" / "config").unlink()
    other = _kubeconfig(tmp_path / "elsewhere")
    monkeypatch.setenv("KUBECONFIG", f"{tmp_path / 'missing'}:{other}")
    assert connect(Target()).namespace == "team-a"
