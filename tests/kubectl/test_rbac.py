"""REQUIRED_RBAC is the truth: every command needs no more (each run's requests, checked by
the fake API server against the chart's roles) and the chart's roles grant exactly that."""

from __future__ import annotations

import json
from typing import Any

import httpx
import kubernetes_validate
import pytest
import yaml

from jobyard.kubectl import rbac
from jobyard.kubectl.rbac import OPTIONAL_RBAC, REQUIRED_RBAC, Permission
from tests.kubectl.cluster import BASE_VALUES, install, render
from tests.kubectl.conftest import ROOT, USERS, Apis, Cluster

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


def _atoms(rules: list[Obj]) -> set[tuple[str, str, str, str | None]]:
    """Each rule as (group, resource, verb, name): None where the rule names nothing."""
    return {
        (group, resource, verb, name)
        for rule in rules
        for group in rule["apiGroups"]
        for resource in rule["resources"]
        for verb in rule["verbs"]
        for name in rule.get("resourceNames") or [None]
    }


VARIANTS: dict[str, tuple[Obj, str, rbac.ReleaseNames]] = {
    "defaults": (
        {},
        "jobyard",
        rbac.ReleaseNames("jobyard", ("default", "emails", "reports")),
    ),
    "token-secret": (
        {"kubectlPlugin": {"rbac": {"readTokenSecret": True}}},
        "prod",
        rbac.ReleaseNames("prod-jobyard", ("default", "emails", "reports"), secret="prod-jobyard"),
    ),
    "existing-secret-port-queues": (
        {
            "kubectlPlugin": {"rbac": {"readTokenSecret": True}},
            "secrets": {"existingSecret": "vault-jobyard"},
            "api": {"service": {"port": 9000}},
            "queues": [{"name": "a"}, {"name": "b-2"}],
            "fullnameOverride": "jy",
        },
        "x",
        rbac.ReleaseNames("jy", ("a", "b-2"), 9000, "vault-jobyard"),
    ),
}


@pytest.mark.parametrize("variant", VARIANTS)
def test_chart_roles_are_the_plugins_roles(variant: str) -> None:
    """The chart's Roles and `rbac.roles` (what `kubectl jobyard rbac -o role` prints) are
    the same grants on the same names: REQUIRED_RBAC, NAMED and ReleaseNames are the one
    source, and a change to either side fails here."""
    values, release, names = VARIANTS[variant]
    objects = render(values, release, "jobs")
    kinds = sorted(o["kind"] for o in objects if "Role" in o["kind"])
    assert kinds == ["Role", "Role"]
    ours = {r["metadata"]["name"]: r for r in rbac.roles(names, "jobs")}
    for role in ("read-only", "operator"):
        chart = _role(objects, f"-kubectl-{role}")
        assert chart["metadata"]["namespace"] == "jobs"
        plugin = ours[chart["metadata"]["name"]]
        assert _atoms(chart["rules"]) == _atoms(plugin["rules"]), role
        kubernetes_validate.validate(chart, "1.33.0", strict=True)
        kubernetes_validate.validate(plugin, "1.33.0", strict=True)
    assert _grants(_role(objects, "-kubectl-read-only")["rules"]) == set(rbac.read_only())
    expected = set(rbac.operator()) | ({rbac.GET_SECRETS} if names.secret else set())
    assert _grants(_role(objects, "-kubectl-operator")["rules"]) == expected


def test_every_grant_names_objects_or_says_why_not() -> None:
    """A grant either names the release's objects or is a list / pod logs, documented."""
    every = {*rbac.operator(), *OPTIONAL_RBAC}
    assert set(rbac.NAMED) | set(rbac.UNNAMED) == every
    assert not set(rbac.NAMED) & set(rbac.UNNAMED)
    assert all(p.verb == "list" or p == rbac.GET_POD_LOGS for p in rbac.UNNAMED)
    assert all(rbac.UNNAMED.values())
    assert set(rbac.WORST_CASE) == every


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
    assert [(b["kind"], b["metadata"]) for b in bindings] == [
        (
            "RoleBinding",
            {
                "name": "jobyard-kubectl-operator",
                "namespace": "jobs",
                "labels": bindings[0]["metadata"]["labels"],
            },
        )
    ]
    assert bindings[0]["roleRef"] == {
        "apiGroup": "rbac.authorization.k8s.io",
        "kind": "Role",
        "name": "jobyard-kubectl-operator",
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
    argv = ["rbac", "-o", "role", "-n", "jobs", "--fullname", "jobyard"]
    argv += ["--queue", "default", "--queue", "emails", "--queue", "reports"]
    roles = list(yaml.safe_load_all(cluster.run(*argv).stdout))
    assert [r["metadata"] for r in roles] == [
        {"name": "jobyard-kubectl-read-only", "namespace": "jobs"},
        {"name": "jobyard-kubectl-operator", "namespace": "jobs"},
    ]
    chart = cluster.jobs
    assert _atoms(roles[0]["rules"]) == _atoms(chart.role_rules("read-only"))
    assert _atoms(roles[1]["rules"]) == _atoms(chart.role_rules("operator"))
    with_secret = list(yaml.safe_load_all(cluster.run(*argv, "--token-secret", "jobyard").stdout))
    assert _atoms(with_secret[1]["rules"]) - _atoms(roles[1]["rules"]) == {
        ("", "secrets", "get", "jobyard")
    }
    for role in roles:
        kubernetes_validate.validate(role, "1.33.0", strict=True)
    no_queue = cluster.run("rbac", "-o", "role")
    assert no_queue.returncode == 2
    assert "--queue NAME" in no_queue.stderr
    as_json = json.loads(cluster.run("rbac", "-o", "json").stdout)
    assert as_json["logs"] == ["list deployments.apps", "list pods", "get pods/log"]
    assert cluster.api.requests == []


def test_runbooks_readme_shows_the_table() -> None:
    readme = (ROOT / "docs" / "runbooks" / "README.md").read_text(encoding="utf-8")
    assert rbac.markdown_table() in readme


def test_base_values_enable_the_roles() -> None:
    assert BASE_VALUES["kubectlPlugin"] == {"rbac": {"create": True}}


def test_operations_doc_shows_what_each_role_can_do() -> None:
    doc = (ROOT / "docs" / "operations.md").read_text(encoding="utf-8")
    assert rbac.role_table() in doc
    assert rbac.markdown_table() in doc
    table = rbac.role_table().splitlines()
    # One row per grant: the operator's, and the optional Secret.
    assert len(table) == 2 + len({*rbac.operator(), *OPTIONAL_RBAC})
    assert (
        "| - | with `readTokenSecret` | get | `secrets` | `<fullname>` (or "
        "`secrets.existingSecret`) |"
    ) in "\n".join(table)


def test_the_operator_role_reaches_only_its_own_releases_objects(cluster: Cluster) -> None:
    """Another release in the same namespace, and other Secrets, are out of reach of the
    chart's operator Role: the names in its rules are checked on every request."""
    install(cluster.api, {}, "other", "jobs")
    denied = {
        ("restart", "api", "-r", "other"): 'patch deployments.apps "other-jobyard-api"',
        ("pause", "default", "-r", "other"): (
            'get scaledobjects.keda.sh "other-jobyard-worker-default"'
        ),
        ("dead-letters", "default", "-r", "other"): 'get services "other-jobyard-api"',
    }
    for argv, what in denied.items():
        result = cluster.run(*argv, user="operator")
        assert result.returncode == 2, (argv, result.stdout)
        assert f"RBAC denied: you may not {what} in namespace" in result.stderr, argv
    assert (
        cluster.api.get("Deployment", "jobs", "other-jobyard-api")["metadata"].get("generation")
        == 1
    )
    cluster.api.put(
        {"apiVersion": "v1", "kind": "Secret", "metadata": {"name": "unrelated"}}, "secure"
    )
    operator = {"Authorization": f"Bearer {USERS['operator']}"}
    secrets = f"{cluster.api.url}/api/v1/namespaces/secure/secrets"
    with httpx.Client(headers=operator) as http:
        assert http.get(f"{secrets}/secure-jobyard").status_code == 200
        assert http.get(f"{secrets}/unrelated").status_code == 403
        assert http.get(secrets).status_code == 403
        assert http.get(f"{secrets}?watch=true").status_code == 403
        assert http.get(f"{cluster.api.url}/api/v1/secrets").status_code == 403
