"""REQUIRED_RBAC is the truth: every command needs no more (each run's requests, checked by
the fake API server against the chart's roles) and the chart's roles grant exactly that."""

from __future__ import annotations

import json
from typing import Any

import kubernetes_validate
import pytest
import yaml

from jobyard.kubectl import rbac
from jobyard.kubectl.rbac import OPTIONAL_RBAC, REQUIRED_RBAC, Permission
from tests.kubectl.cluster import BASE_VALUES, install, render
from tests.kubectl.conftest import ROOT, Apis, Cluster

Obj = dict[str, Any]


def _grants(rules: list[Obj]) -> set[Permission]:
    return {
        Permission(group, resource, verb)
        for rule in rules
        for group in rule["apiGroups"]
        for resource in rule["resources"]
        for verb in rule["verbs"]
    }


def _role(objects: list[Obj], suffix: str) -> Obj:
    return next(
        o for o in objects if o["kind"].endswith("Role") and o["metadata"]["name"].endswith(suffix)
    )


@pytest.mark.parametrize("scope", ["namespace", "cluster"])
@pytest.mark.parametrize("secret", [False, True])
def test_chart_roles_grant_exactly_the_table(scope: str, secret: bool) -> None:
    objects = render(
        {"kubectlPlugin": {"rbac": {"scope": scope, "readTokenSecret": secret}}}, "jobyard", "jobs"
    )
    kinds = sorted(o["kind"] for o in objects if "Role" in o["kind"])
    assert kinds == (["ClusterRole"] * 2 if scope == "cluster" else ["Role"] * 2)
    assert _grants(_role(objects, "-kubectl-read-only")["rules"]) == set(rbac.read_only())
    expected = set(rbac.operator()) | ({rbac.GET_SECRETS} if secret else set())
    assert _grants(_role(objects, "-kubectl-operator")["rules"]) == expected
    for obj in objects:
        if "Role" in obj["kind"]:
            kubernetes_validate.validate(obj, "1.33.0", strict=True)


def test_namespace_roles_name_only_this_releases_objects() -> None:
    objects = render({"kubectlPlugin": {"rbac": {"readTokenSecret": True}}}, "prod", "jobs")
    named = {
        (rule["resources"][0], tuple(rule["verbs"])): rule.get("resourceNames")
        for rule in _role(objects, "-kubectl-operator")["rules"]
    }
    workers = [
        "prod-jobyard-worker-default",
        "prod-jobyard-worker-emails",
        "prod-jobyard-worker-reports",
    ]
    assert named == {
        ("deployments", ("list",)): None,
        ("scaledobjects", ("list",)): None,
        ("horizontalpodautoscalers", ("list",)): None,
        ("services", ("get",)): ["prod-jobyard-api"],
        ("services/proxy", ("create", "delete", "get")): ["prod-jobyard-api:8000"],
        ("pods", ("list",)): None,
        ("pods/log", ("get",)): None,
        ("scaledobjects", ("get", "patch")): workers,
        ("deployments", ("patch",)): ["prod-jobyard-api", "prod-jobyard-beat", *workers],
        ("secrets", ("get",)): ["prod-jobyard"],
    }


def test_bindings_only_with_subjects() -> None:
    none = render({}, "jobyard", "jobs")
    assert not [o for o in none if o["kind"].endswith("Binding")]
    off = render({"kubectlPlugin": {"rbac": {"create": False}}}, "jobyard", "jobs")
    assert not [o for o in off if "Role" in o["kind"]]
    bound = render(
        {
            "kubectlPlugin": {
                "rbac": {
                    "scope": "cluster",
                    "operatorSubjects": [
                        {"kind": "ServiceAccount", "name": "bot", "namespace": "ci"},
                        {"kind": "Group", "name": "sre"},
                    ],
                }
            }
        },
        "jobyard",
        "jobs",
    )
    bindings = [o for o in bound if o["kind"].endswith("Binding")]
    assert [(b["kind"], b["metadata"]["name"]) for b in bindings] == [
        ("ClusterRoleBinding", "jobs-jobyard-kubectl-operator")
    ]
    assert bindings[0]["roleRef"] == {
        "apiGroup": "rbac.authorization.k8s.io",
        "kind": "ClusterRole",
        "name": "jobs-jobyard-kubectl-operator",
    }
    assert bindings[0]["subjects"] == [
        {"kind": "ServiceAccount", "name": "bot", "namespace": "ci"},
        {"kind": "Group", "name": "sre", "apiGroup": "rbac.authorization.k8s.io"},
    ]
    kubernetes_validate.validate(bindings[0], "1.33.0", strict=True)


def _used(cluster: Cluster, since: int) -> set[Permission]:
    return {
        Permission(r.group, r.resource, r.verb)
        for r in cluster.api.requests[since:]
        if r.status < 400 or r.status == 404
    }


def test_each_command_needs_what_the_table_says_under_the_chart_roles(
    cluster: Cluster, clean_redis: Apis
) -> None:
    """Run every command as `operator` (read-only ones also as `viewer`) with the chart's
    Roles enforced; what each run used is within REQUIRED_RBAC, and all runs of a command
    together use all of it."""
    plain = install(cluster.api, {"keda": {"enabled": False}}, "plain", "plain")
    cluster.api.proxy_targets[("plain", "plain-jobyard-api")] = clean_redis.open_url
    cluster.api.users["k8s-operator-token"][1].namespaced["plain"] = plain.role_rules("operator")
    cluster.jobs.add_pod("jobyard-worker-default", lines=["hello"])
    dead = clean_redis.dead_letter()
    job = clean_redis.enqueue("jobyard.noop", "emails")
    runs: dict[str, list[list[str]]] = {
        "status": [["status"]],
        "pause": [["pause", "default"], ["pause", "emails", "-n", "plain", "--scale"]],
        "resume": [["resume", "default"], ["resume", "emails", "-n", "plain"]],
        "drain": [["drain", "reports"], ["drain", "reports", "-n", "plain", "--scale"]],
        "dead-letters list": [["dead-letters", "default"]],
        "dead-letters retry": [["dead-letters", "default", "retry", "--yes"]],
        "dead-letters purge": [["dead-letters", "default", "purge", dead, "--yes"]],
        "jobs": [["jobs", job]],
        "logs": [["logs", "default"]],
        "restart": [["restart", "api"]],
    }
    assert set(runs) == set(REQUIRED_RBAC)
    for command, argvs in runs.items():
        users = ["operator", "viewer"] if command in rbac.READ_ONLY_COMMANDS else ["operator"]
        for user in users:
            used: set[Permission] = set()
            for argv in argvs:
                since = len(cluster.api.requests)
                result = cluster.run(*argv, user=user)
                assert result.returncode == 0, (argv, user, result.stderr)
                used |= _used(cluster, since)
            assert used == set(REQUIRED_RBAC[command]), (command, user)
    secure = len(cluster.api.requests)
    assert cluster.run("status", "-n", "secure", user="operator").returncode == 0
    assert _used(cluster, secure) == set(REQUIRED_RBAC["status"]) | set(OPTIONAL_RBAC)


def test_rbac_command_prints_the_table_and_roles(cluster: Cluster) -> None:
    table = cluster.run("rbac")
    assert table.returncode == 0
    assert table.stdout == rbac.markdown_table() + "\n"
    assert (
        "| `kubectl jobyard pause` | `list deployments.apps`, `get scaledobjects.keda.sh`, "
        "`patch scaledobjects.keda.sh`, `patch deployments.apps` |"
    ) in table.stdout.splitlines()
    roles = list(yaml.safe_load_all(cluster.run("rbac", "-o", "role", "-n", "ops").stdout))
    assert [r["metadata"] for r in roles] == [
        {"name": "jobyard-kubectl-read-only", "namespace": "ops"},
        {"name": "jobyard-kubectl-operator", "namespace": "ops"},
    ]
    assert _grants(roles[0]["rules"]) == set(rbac.read_only())
    assert _grants(roles[1]["rules"]) == set(rbac.operator())
    for role in roles:
        kubernetes_validate.validate(role, "1.33.0", strict=True)
    as_json = json.loads(cluster.run("rbac", "-o", "json").stdout)
    assert as_json["logs"] == ["list deployments.apps", "list pods", "get pods/log"]
    assert cluster.api.requests == []


def test_runbooks_readme_shows_the_table() -> None:
    readme = (ROOT / "docs" / "runbooks" / "README.md").read_text(encoding="utf-8")
    assert rbac.markdown_table() in readme


def test_base_values_enable_the_roles() -> None:
    assert BASE_VALUES["kubectlPlugin"] == {"rbac": {"create": True}}
