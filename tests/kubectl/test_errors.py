"""Errors a person can act on: release not found (with the ones that exist), RBAC denied
(naming verb and resource), the Kubernetes API or the jobyard API unreachable."""

from __future__ import annotations

from tests.kubectl.cluster import install, write_kubeconfig
from tests.kubectl.conftest import Cluster
from tests.support.redis_server import free_port


def test_unknown_release_lists_the_ones_in_the_namespace(cluster: Cluster) -> None:
    result = cluster.run("status", "--release", "nope")
    assert result.returncode == 2
    assert result.stderr == (
        "kubectl jobyard: no jobyard release 'nope' in namespace 'jobs' (Deployments labelled "
        "app.kubernetes.io/name=jobyard); releases there: jobyard\n"
    )


def test_empty_namespace_lists_releases_elsewhere_when_allowed(cluster: Cluster) -> None:
    result = cluster.run("status", "-n", "empty")
    assert result.returncode == 2
    assert result.stderr == (
        "kubectl jobyard: no jobyard release in namespace 'empty' (Deployments labelled "
        "app.kubernetes.io/name=jobyard); releases in other namespaces: jobyard (-n jobs), "
        "secure (-n secure)\n"
    )
    assert cluster.requests()[-1] == (
        "GET",
        "/apis/apps/v1/deployments",
        "labelSelector=app.kubernetes.io/name=jobyard",
    )
    viewer = cluster.run("status", "-n", "empty", user="viewer")
    assert viewer.returncode == 2
    assert viewer.stderr.endswith(
        'RBAC denied: you may not list deployments.apps in namespace "empty" (the API server '
        'said: deployments.apps is forbidden: User "viewer" cannot list resource '
        '"deployments" in API group "apps" in the namespace "empty"). Ask for the chart\'s '
        "kubectl role (values kubectlPlugin.rbac) or check with `kubectl auth can-i list "
        "deployments.apps -n empty`\n"
    )


def test_cluster_listing_forbidden_is_said(cluster: Cluster) -> None:
    cluster.api.users["k8s-viewer-token"][1].namespaced["empty"] = [
        {"apiGroups": ["apps"], "resources": ["deployments"], "verbs": ["list"]}
    ]
    result = cluster.run("status", "-n", "empty", user="viewer")
    assert result.returncode == 2
    assert result.stderr.endswith(
        "; you may not list Deployments in other namespaces to look for releases there\n"
    )


def test_several_releases_need_release(cluster: Cluster) -> None:
    install(cluster.api, {"fullnameOverride": "jy2"}, "second", "jobs")
    result = cluster.run("status")
    assert result.returncode == 2
    assert result.stderr == (
        "kubectl jobyard: namespace 'jobs' has several jobyard releases: jobyard, second; "
        "pass --release NAME\n"
    )
    chosen = cluster.run("restart", "api", "--release", "second")
    assert chosen.returncode == 0, chosen.stderr
    assert chosen.stdout.startswith("deploy/jy2-api restarted")


def test_rbac_denied_names_verb_and_resource(cluster: Cluster) -> None:
    result = cluster.run("pause", "default", user="viewer")
    assert result.returncode == 2
    assert result.stderr == (
        "kubectl jobyard: RBAC denied: you may not get scaledobjects.keda.sh "
        '"jobyard-worker-default" in namespace "jobs" (the API server said: '
        'scaledobjects.keda.sh "jobyard-worker-default" is forbidden: User "viewer" cannot get '
        'resource "scaledobjects" in API group "keda.sh" in the namespace "jobs"). Ask for the '
        "chart's kubectl role (values kubectlPlugin.rbac) or check with `kubectl auth can-i get "
        "scaledobjects.keda.sh -n jobs`\n"
    )
    nobody = cluster.run("logs", "default", user="nobody")
    assert nobody.returncode == 2
    assert 'you may not list deployments.apps in namespace "jobs"' in nobody.stderr


def test_bad_credentials_and_unreachable_api_server(cluster: Cluster) -> None:
    bad = write_kubeconfig(cluster.home / "bad", cluster.api.url, {"who": "unknown-token"}, "jobs")
    result = cluster.run("status", env={"KUBECONFIG": str(bad)})
    assert result.returncode == 2
    assert result.stderr == (
        "kubectl jobyard: the Kubernetes API server rejected your credentials (401 "
        "Unauthorized): log in again or check the kubeconfig user (`kubectl config view "
        "--minify`)\n"
    )
    port = free_port()
    gone = write_kubeconfig(cluster.home / "gone", f"http://127.0.0.1:{port}", {"a": "t"}, "jobs")
    down = cluster.run("status", env={"KUBECONFIG": str(gone)})
    assert down.returncode == 2
    assert down.stderr.startswith(
        f"kubectl jobyard: cannot reach the Kubernetes API server at http://127.0.0.1:{port}: "
    )
    assert "Connection refused" in down.stderr
    assert down.stderr.endswith(
        "(check the kubeconfig context: `kubectl config current-context`)\n"
    )


def test_missing_kubeconfig_and_unknown_context(cluster: Cluster) -> None:
    missing = cluster.run("status", env={"KUBECONFIG": str(cluster.home / "nothing")})
    assert missing.returncode == 2
    assert missing.stderr.startswith("kubectl jobyard: kubeconfig: ")
    assert "(pass --kubeconfig or set KUBECONFIG)" in missing.stderr
    unknown = cluster.run("status", "--context", "staging")
    assert unknown.returncode == 2
    assert "staging" in unknown.stderr and unknown.stderr.startswith(
        "kubectl jobyard: kubeconfig: "
    )


def test_api_unreachable_for_api_commands(cluster: Cluster) -> None:
    cluster.api.proxy_targets[("jobs", "jobyard-api")] = f"http://127.0.0.1:{free_port()}"
    result = cluster.run("dead-letters", "default")
    assert result.returncode == 2
    assert result.stderr.startswith(
        "kubectl jobyard: the jobyard API of release 'jobyard' is unreachable through the "
        "Kubernetes service proxy (jobyard-api:8000): error trying to reach service: "
    )


def test_options_before_the_command_and_kubeconfig_flag(cluster: Cluster) -> None:
    result = cluster.run(
        "--kubeconfig",
        str(cluster.kubeconfig),
        "-n",
        "secure",
        "--context",
        "operator",
        "restart",
        "api",
        env={"KUBECONFIG": "/nonexistent"},
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith("deploy/secure-jobyard-api restarted")
    assert cluster.api.requests[-1].user == "operator"
